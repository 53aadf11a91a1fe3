"""Cost of the MX emulation (lm/model/mx.py), measured side by side in one run.

    python -m benchmarks.mx [--size d128_l4] [--batch_size 16] [--seq_len 256]

One JSON line per precision with the train-step time and its ratio to the float32 step
(weights and activations in one MX format, every quantizable layer, backward re-quantized,
diagnostics counted; scaled_dot: the same through jax.lax.scaled_dot),
and one per format with quantize-dequantize throughput (elements/s, jitted, 4M float32 values).
Timings are medians of --repeats runs of --steps steps after a warm-up.
"""
import json
import sys

import jax

from configs import base
from core import cli
from lm.model import mx
from lm.train.timing import build, median_seconds, random_windows, time_steps

PRECISIONS = {"float32": {}, "bfloat16": {"activation_dtype": "bfloat16"},
              "mxfp8_e4m3": {"mx_weights": "mxfp8_e4m3", "mx_activations": "mxfp8_e4m3"},
              "mxfp4_e2m1": {"mx_weights": "mxfp4_e2m1", "mx_activations": "mxfp4_e2m1"},
              "mxfp8_e4m3/scaled_dot": {"mx_weights": "mxfp8_e4m3",
                                        "mx_activations": "mxfp8_e4m3",
                                        "mx_backend": "scaled_dot"}}


def step_seconds(precision: dict, args) -> float:
    config = base.get_config(args.size)
    config.model.max_seq_len = max(args.seq_len, config.model.max_seq_len)
    config.train.batch_size = args.batch_size
    config.precision.update(precision)
    rt, state, _ = build(config, args.seq_len, args.vocab_size)
    windows = random_windows(rt, args.batch_size, args.seq_len, args.vocab_size)
    return time_steps(rt, state, windows, args.steps, args.repeats)


def quantize_elements_per_s(fmt: str, repeats: int) -> float:
    x = jax.random.normal(jax.random.PRNGKey(0), (4096, 1024))
    fn = jax.jit(lambda x: mx.quantize(x, fmt, -1))
    return x.size / median_seconds(lambda: fn(x).block_until_ready(), repeats)


PARSER = cli.parser("python -m benchmarks.mx", __doc__)
PARSER.add_argument("--size", default="d128_l4")
PARSER.add_argument("--seq_len", type=int, default=256)
PARSER.add_argument("--batch_size", type=int, default=16)
PARSER.add_argument("--vocab_size", type=int, default=8192)
PARSER.add_argument("--steps", type=int, default=3)
PARSER.add_argument("--repeats", type=int, default=3)


@cli.main()
def main(argv) -> None:
    args = PARSER.parse_args(argv)
    machine = {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind}
    baseline = step_seconds(PRECISIONS["float32"], args)
    for name, precision in PRECISIONS.items():
        seconds = baseline if name == "float32" else step_seconds(precision, args)
        print(json.dumps({"bench": "mx_train_step", "precision": name, "size": args.size,
                          "batch_size": args.batch_size, "seq_len": args.seq_len,
                          "step_s": seconds, "ratio_to_float32": seconds / baseline,
                          **machine}), flush=True)
    for fmt in mx.FORMATS:
        print(json.dumps({"bench": "mx_quantize", "format": fmt,
                          "elements_per_s": quantize_elements_per_s(fmt, args.repeats),
                          **machine}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
