"""Train a decoder-only LM from a config file.

    python -m lm.train --config=configs/quickstart.py --workdir=runs/quickstart \
        --config.optimizer.lr=3e-3

The workdir receives config.json (the resolved config), model.json (shape, parameter counts,
FLOPs per token), metrics.jsonl (see lm/metrics_log.py) and checkpoints/. Starting on a workdir
that has checkpoints resumes from the newest good one, bit-identically on the same machine.
SIGTERM / SIGINT finish the current step, save a checkpoint and exit 0.
"""
import json
import math
import os
import signal
import sys
import time

import jax
from absl import app, flags, logging
from ml_collections import config_flags
from tqdm import tqdm

from data.clients import FetchError
from lm import distributed, inputs, runtime, sharding
from lm.checkpoint import Checkpointer
from lm.config_checks import (ConfigError, check_config, check_override_keys, check_workdir,
                              model_record)
from lm.loss_spikes import LossSpikes
from lm.metrics_log import MetricsLog, read_metrics
from lm.model import ModelConfig
from lm.model_info import count_pytree_params, model_info
from lm.step import TrainState


class StopRequested:
    """Turns SIGTERM / SIGINT into a flag the loop reads between steps."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run(config, workdir: str) -> dict:
    """Trains (or resumes) the run in `workdir`; returns a summary dict. Every process of a
    multi-process run calls it; process 0 writes the run files and metrics."""
    check_config(config)
    sharder = sharding.from_config(config)
    try:
        optimizer = runtime.build_optimizer(config)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    try:
        data = inputs.load(config)  # prepares data on first use
    except ValueError as err:  # unknown corpus, too-short split, stale preparation
        raise ConfigError(str(err)) from err
    if 0 < config.model.vocab_size < data.vocab_size:
        raise ConfigError(f"model.vocab_size={config.model.vocab_size} is smaller than the "
                          f"tokenizer's {data.vocab_size} tokens; use 0 (the tokenizer's size) "
                          f"or a padded size >= {data.vocab_size}")
    model_cfg = ModelConfig.for_run(config, data.vocab_size)
    check_workdir(workdir, model_cfg)
    rt = runtime.build(model_cfg, optimizer.tx, sharder, seed=config.train.seed,
                       seq_len=config.data.seq_len, microbatches=config.train.microbatches,
                       z_loss=config.model.z_loss)

    primary = jax.process_index() == 0
    info = model_info(model_cfg, config.data.seq_len)
    if primary:
        os.makedirs(workdir, exist_ok=True)
        _write_run_files(workdir, config, model_record(model_cfg, info))
        print(f"model: {info['params/total']:,} parameters ({info['params/non_embedding']:,} "
              f"non-embedding), {info['flops_per_token']:,} training FLOPs/token; mesh "
              f"{sharder.describe()}", flush=True)

    checkpointer = Checkpointer(workdir, config.train.keep_checkpoints)
    metrics_log = MetricsLog(workdir) if primary else None
    restored = checkpointer.restore_latest(rt.abstract_state)
    if restored is None and config.train.branch_from:
        restored = _branch(config.train.branch_from, config.train.branch_step, model_cfg,
                           rt.abstract_state, metrics_log)
    if restored is None:
        state = rt.init_state()
        start = 0
    else:
        start, state, _ = restored
        if start >= config.train.steps:
            checkpointer.close()
            if primary:
                print(f"the run in {workdir} is complete: its checkpoint is at step {start} and "
                      f"train.steps={config.train.steps}; raise --config.train.steps to train "
                      "further", flush=True)
            return {"step": start, "tokens": start * config.train.batch_size
                    * config.data.seq_len, "stopped": None}
        if primary:
            print(f"resumed from the checkpoint at step {start}", flush=True)
    if primary:
        metrics_log.resume_at(start)
    logged = read_metrics(workdir) if primary and os.path.exists(metrics_log.path) else []
    spikes = LossSpikes(config.train.loss_spike_window, config.train.loss_spike_ratio,
                        int(logged[-1].get("train/loss_spikes", 0)) if logged else 0)
    n_params = count_pytree_params(state.params)
    assert n_params == info["params/total"], (n_params, info["params/total"])

    eval_params = jax.jit(optimizer.eval_params, out_shardings=rt.state_shardings.params)
    tokens_per_step = config.train.batch_size * config.data.seq_len

    def save(step: int, state: TrainState) -> None:
        checkpointer.save(step, state, {"step": step, "tokens": step * tokens_per_step})

    last_row = {}
    timer = (time.perf_counter(), start)
    bar = tqdm(total=config.train.steps, initial=start, desc="train", unit="step",
               dynamic_ncols=True, mininterval=1.0, file=sys.stderr, disable=not primary)
    with StopRequested() as stop:
        step = start
        while step < config.train.steps:
            if distributed.any_process(stop.signal_name is not None):  # all stop together
                stop.signal_name = stop.signal_name or "a signal to another process"
                break
            windows = data.train_batch(step)
            state, metrics, layer_stats = rt.train_step(state,
                                                     inputs.to_device(windows, sharder.batch))
            step += 1
            host = jax.device_get(metrics)  # one sync per step: a NaN is caught before saving
            _check_finite(host, step, checkpointer)
            spikes.update(float(host["train/loss"]))
            done = step == config.train.steps
            evaluate = step % config.train.eval_every == 0 or done
            stats = config.train.layer_stats_every and step % config.train.layer_stats_every == 0
            if step % config.train.log_every == 0 or evaluate or stats:
                now = time.perf_counter()
                seconds = (now - timer[0]) / max(step - timer[1], 1)
                timer = (now, step)
                row = {"step": step, "tokens": step * tokens_per_step,
                       "flops": step * tokens_per_step * info["flops_per_token"],
                       **{k: float(v) for k, v in host.items()},
                       "train/lr": float(optimizer.schedule(step - 1)),
                       "train/loss_spikes": spikes.count,
                       "time/step_s": seconds, "time/tokens_per_s": tokens_per_step / seconds}
                if stats:
                    row.update({k: float(v) for k, v in jax.device_get(layer_stats).items()})
                if evaluate:
                    row.update(_evaluate(rt.eval_step, eval_params(state.opt_state, state.params),
                                         data.eval_sets, sharder.batch))
                    timer = (time.perf_counter(), step)  # eval time is not step time
                if primary:
                    metrics_log.write(row)
                last_row = row
                bar.set_postfix(loss=f"{row['train/loss']:.3f}",
                                tok_s=f"{row['time/tokens_per_s']:.0f}")
            if step % config.train.checkpoint_every == 0 or done:
                save(step, state)
            bar.update(1)
        bar.close()
        if stop.signal_name is not None and step not in checkpointer.steps():
            save(step, state)
        checkpointer.close()

    summary = {**last_row, "step": step, "tokens": step * tokens_per_step}
    if primary and stop.signal_name is not None:
        print(f"stopped by {stop.signal_name} at step {step}; checkpoint saved in "
              f"{checkpointer.directory}. Rerun the same command to resume.", flush=True)
    elif primary:
        evals = "  ".join(f"{k}={v:.4f}" for k, v in last_row.items() if k.startswith("eval/"))
        print(f"done: {step} steps, {step * tokens_per_step:,} tokens, "
              f"train/loss={last_row.get('train/loss', float('nan')):.4f}  {evals}", flush=True)
    return {**summary, "stopped": stop.signal_name}


def _branch(source: str, step: int, model_cfg: ModelConfig, abstract_state, metrics_log):
    """(step, state, meta) of run `source`'s checkpoint at `step` (-1: its newest), read-only;
    the branch's metrics.jsonl starts with the source's rows up to that step."""
    if not os.path.isdir(os.path.join(source, "checkpoints")):
        raise ConfigError(f"train.branch_from={source!r} has no checkpoints/ folder; give the "
                          "workdir of a run that saved checkpoints")
    check_workdir(source, model_cfg)
    parent = Checkpointer(source, 1, read_only=True)
    steps = parent.steps()
    step = steps[-1] if step == -1 and steps else step
    if step not in steps:
        raise ConfigError(f"train.branch_step={step}: {source} has checkpoints at steps "
                          f"{steps}; use one of those (or -1, the newest)")
    state, meta = parent.restore(step, abstract_state)
    parent.close()
    if metrics_log is not None:
        metrics_log.start_from([r for r in read_metrics(source) if r["step"] <= step])
        print(f"branched from {source} at step {step}", flush=True)
    return step, state, meta


def _check_finite(host_metrics: dict, step: int, checkpointer: Checkpointer) -> None:
    """Stops the run at the first non-finite loss or norm, before that state can be saved."""
    if all(math.isfinite(float(v)) for v in host_metrics.values()):
        return
    checkpointer.wait()
    good = checkpointer.steps()
    raise FloatingPointError(
        f"training loss {float(host_metrics['train/loss'])}, gradient norm "
        f"{float(host_metrics['train/grad_norm'])} at step {step}: not finite; stopped without "
        f"saving. The last good checkpoint ({'step ' + str(good[-1]) if good else 'none'}) is "
        f"kept in {checkpointer.directory}. Lower optimizer.lr, raise schedule.warmup_steps or "
        "set model.z_loss / model.qk_norm, then rerun with a new --workdir.")


def _evaluate(eval_step, params, eval_sets: dict, batch_sharding) -> dict:
    """Validation loss (nats/token) and bits per byte on each set's fixed windows."""
    out = {}
    for name, eval_set in eval_sets.items():
        nats = sum(float(eval_step(params, inputs.to_device(inputs.process_rows(w),
                                                            batch_sharding)))
                   for w in eval_set.batches)
        loss = nats / eval_set.num_targets
        out[f"eval/{name}/loss"] = loss
        out[f"eval/{name}/bpb"] = loss / math.log(2) / eval_set.bytes_per_token
    return out


def _write_run_files(workdir: str, config, record: dict) -> None:
    """config.json and model.json; a resume with a changed config keeps the first config.json
    and writes the new one beside it, so what each leg of the run used stays on record."""
    resolved = json.loads(config.to_json())
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            if json.load(f) != resolved:
                path = os.path.join(workdir, f"config.{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(resolved, f, indent=2)
    with open(os.path.join(workdir, "model.json"), "w") as f:
        json.dump(record, f, indent=2)


_CONFIG = config_flags.DEFINE_config_file("config", "configs/quickstart.py",
                                          "Config file (a get_config() python file).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics).")


def main(argv) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:  # absl would log INFO (orbax is chatty there)
        logging.set_verbosity(logging.WARNING)
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required, e.g. --workdir=runs/quickstart")
    distributed.initialize()
    try:
        run(_CONFIG.value, _WORKDIR.value)
    except (ConfigError, FileNotFoundError, FetchError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(3 if isinstance(err, FloatingPointError) else 2)


def entry_point() -> None:
    try:
        check_override_keys(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    app.run(main)


if __name__ == "__main__":
    entry_point()
