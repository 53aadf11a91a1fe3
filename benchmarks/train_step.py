"""Train-step throughput for ladder sizes, against the machine's practical matmul peak.

    python -m benchmarks.train_step [--sizes d128_l4,d256_l4,d384_l6] [--seq_len 256]
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m benchmarks.train_step \\
        --sizes d256_l4 --mesh data=8 --mesh fsdp=8

Prints one JSON line per size (tokens/s, achieved training FLOP/s by the Kaplan count of
lm/model/info.py) and one for a plain square matmul in the same dtype, measured in the same run;
`fraction_of_matmul_peak` is the ratio of the two, the hardware-independent figure to compare,
and on a known accelerator `mfu` divides by the chip's dense bf16 peak (lm/compile/chips.py).
Each timing is the median of `--repeats` timed runs of `--steps` steps after a warm-up step
(lm/train/timing.py).
With `--mesh` (repeatable) each size runs on each mesh, and the row adds the per-device bytes of
parameters and optimizer state (most loaded device, and the one-copy total). On fake CPU devices
the point is that the sharded programs run and how memory divides, not speed: the 8 "devices"
share the same cores.
"""
import json
import platform
import sys

import jax
import jax.numpy as jnp

from configs import base
from core import cli
from lm.compile.chips import chip_of
from lm.model import ModelConfig
from lm.model.config import resolve_dtype
from lm.model.info import flops_per_token, param_counts
from lm.train import runtime
from lm.train.timing import build, median_seconds, random_windows, time_steps


def matmul_flops_per_s(n: int, dtype, repeats: int) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
    mm = jax.jit(lambda x, y: x @ y)
    return 2 * n ** 3 / median_seconds(lambda: mm(a, b).block_until_ready(), repeats)


def train_step_figures(size: str, seq_len: int, batch_size: int, vocab_size: int, dtype: str,
                       steps: int, repeats: int, mesh: dict) -> dict:
    config = base.get_config(size)
    config.model.max_seq_len = max(seq_len, config.model.max_seq_len)
    config.train.batch_size = batch_size
    config.mesh.update(mesh)
    config.precision.activation_dtype = dtype
    rt, state, _ = build(config, seq_len, vocab_size)
    cfg = ModelConfig.for_run(config, vocab_size)
    memory = {f"{part}_{k}": v for part in ("params", "opt_state")
              for k, v in runtime.per_device_bytes(getattr(state, part)).items()}
    seconds = time_steps(rt, state, random_windows(rt, batch_size, seq_len, vocab_size), steps,
                         repeats)
    tokens_per_s = batch_size * seq_len / seconds
    return {"size": size, "params": param_counts(cfg)["total"], "seq_len": seq_len,
            "batch_size": batch_size, "vocab_size": vocab_size, "dtype": cfg.dtype,
            "attention": cfg.attention,
            "mesh": rt.sharder.describe(), "step_s": seconds, "tokens_per_s": tokens_per_s,
            "flops_per_s": tokens_per_s * flops_per_token(cfg, seq_len), **memory}


def parse_mesh(spec: str) -> dict:
    """"fsdp=8" -> {"data": 1, "fsdp": 8, "tensor": 1}; "" -> data parallel on all devices."""
    sizes = {k: int(v) for k, v in (item.split("=") for item in spec.split(",") if item)}
    return {"data": sizes.pop("data", 1 if sizes else -1), "fsdp": sizes.pop("fsdp", 1),
            "tensor": sizes.pop("tensor", 1), **sizes}


PARSER = cli.parser("python -m benchmarks.train_step", __doc__)
PARSER.add_argument("--sizes", default="d128_l4,d256_l4,d384_l6")
PARSER.add_argument("--seq_len", type=int, default=256)
PARSER.add_argument("--batch_size", type=int, default=16)
PARSER.add_argument("--vocab_size", type=int, default=8192)
PARSER.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                    help="compute dtype (auto: bf16 on GPU/TPU, float32 on CPU)")
PARSER.add_argument("--steps", type=int, default=3)
PARSER.add_argument("--repeats", type=int, default=3)
PARSER.add_argument("--matmul_n", type=int, default=2048)
PARSER.add_argument("--mesh", action="append", default=None, type=parse_mesh,
                    help="mesh sizes, e.g. fsdp=8 or data=2,fsdp=2,tensor=2; repeat the "
                    "flag to compare meshes (default: data parallel on all devices)")


@cli.main()
def main(argv) -> None:
    args = PARSER.parse_args(argv)

    device = jax.devices()[0]
    machine = {"backend": jax.default_backend(), "device": device.device_kind,
               "device_count": jax.device_count(), "cpu": platform.processor() or
               platform.machine()}
    dtype = resolve_dtype(args.dtype)
    peak = matmul_flops_per_s(args.matmul_n, jnp.dtype(dtype), args.repeats)
    print(json.dumps({"bench": "matmul", "n": args.matmul_n, "dtype": dtype,
                      "flops_per_s": peak, **machine}), flush=True)
    chip = chip_of(device.device_kind)
    for size in args.sizes.split(","):
        for mesh in args.mesh or [parse_mesh("")]:
            row = train_step_figures(size, args.seq_len, args.batch_size, args.vocab_size,
                                     args.dtype, args.steps, args.repeats, mesh)
            row["fraction_of_matmul_peak"] = row["flops_per_s"] / peak
            if chip:
                row["mfu"] = row["flops_per_s"] / chip.bf16_flops_per_s
            print(json.dumps({"bench": "train_step", **row, **machine}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
