"""The training loop's host overhead: the time per step of the real loop (lm.train.run: batches
from the prepared corpus, metrics rows, loss spikes, the NaN check) against the bare train step
run back to back on one device batch, in the same process.

    python -m benchmarks.host_loop [--config=configs/quickstart.py] [--steps 200]

The loop's time per step is the mean of metrics.jsonl's time/step_s over the rows after the
first (which holds the compilation); evaluation and checkpoint writes are the hooks' own time,
which time/step_s leaves out. overhead = loop / bare - 1. Prints one JSON line.
"""
import json
import statistics
import sys
import tempfile
import time

import jax

from core import cli
from lm import train
from lm.errors import ConfigError
from lm.train import batches, config_flag
from lm.train.build import build
from lm.train.metrics_log import read_metrics


def bare_step_seconds(config, steps: int) -> float:
    """Seconds per step of the same jitted step, back to back on one batch already on device."""
    with tempfile.TemporaryDirectory() as workdir:
        run = build(config, workdir)
    state = run.rt.init_state()
    windows = batches.to_device(run.data.train_batch(0), run.rt.sharder.batch)
    for _ in range(2):  # compile, warm up
        state, metrics, _ = run.rt.train_step(state, windows)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics, _ = run.rt.train_step(state, windows)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / steps


def loop_step_seconds(config) -> float:
    with tempfile.TemporaryDirectory() as workdir:
        train.run(config, workdir)
        rows = read_metrics(workdir)
    return statistics.mean(r["time/step_s"] for r in rows[1:])


PARSER = cli.parser("python -m benchmarks.host_loop", __doc__)
config_flag.add_config(PARSER, "configs/quickstart.py")
PARSER.add_argument("--steps", type=int, default=200)
PARSER.add_argument("--rounds", type=int, default=2)


@cli.main(ConfigError)
def main(argv) -> None:
    args, config = config_flag.parse(PARSER, argv)
    config.train.update(dict(steps=args.steps, log_every=10, eval_every=args.steps,
                             checkpoint_every=args.steps, layer_stats_every=0))
    bare, loop = [], []
    for _ in range(args.rounds):  # alternated, so both see the same machine state
        bare.append(bare_step_seconds(config, args.steps))
        loop.append(loop_step_seconds(config))
    bare_s, loop_s = statistics.median(bare), statistics.median(loop)
    print(json.dumps({"bench": "host_loop", "config": args.config, "steps": args.steps,
                      "bare_step_s": bare_s, "loop_step_s": loop_s,
                      "host_overhead": loop_s / bare_s - 1, "rounds": args.rounds,
                      "device": jax.devices()[0].device_kind}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
