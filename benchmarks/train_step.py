"""Train-step throughput for ladder sizes, against the machine's practical matmul peak.

    python -m benchmarks.train_step [--sizes d128_l4,d256_l4,d384_l6] [--seq_len 256]

Prints one JSON line per size (tokens/s, achieved training FLOP/s by the Kaplan count of
lm/model_info.py) and one for a plain square matmul in the same dtype, measured in the same run;
`fraction_of_matmul_peak` is the ratio of the two, the hardware-independent figure to compare.
Each timing is the median of `--repeats` timed runs of `--steps` steps after a warm-up step.
"""
import argparse
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import optim
from configs import base
from lm.model import ModelConfig, Transformer, init_params
from lm.model_info import flops_per_token, param_counts
from lm.step import init_state, make_train_step


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of fn() (which must block until its result is ready)."""
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops_per_s(n: int, dtype, repeats: int) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
    mm = jax.jit(lambda x, y: x @ y)
    return 2 * n ** 3 / median_seconds(lambda: mm(a, b).block_until_ready(), repeats)


def train_step_figures(size: str, seq_len: int, batch_size: int, vocab_size: int, dtype: str,
                       steps: int, repeats: int) -> dict:
    config = base.get_config(size)
    config.model.max_seq_len = max(seq_len, config.model.max_seq_len)
    cfg = ModelConfig.from_config(config.model, vocab_size, dtype)
    model = Transformer(cfg)
    params = init_params(model, jax.random.PRNGKey(0), seq_len)
    optimizer = optim.build_from_config(config, params)
    state = init_state(params, optimizer.tx)
    step_fn = jax.jit(make_train_step(model, optimizer.tx, 1, 0.0), donate_argnums=0)
    windows = jnp.asarray(np.random.default_rng(0).integers(0, vocab_size,
                                                            (batch_size, seq_len + 1)), jnp.int32)
    holder = [state]

    def run_steps():
        for _ in range(steps):
            holder[0], metrics, _ = step_fn(holder[0], windows)
        jax.block_until_ready(metrics)

    seconds = median_seconds(run_steps, repeats) / steps
    tokens_per_s = batch_size * seq_len / seconds
    return {"size": size, "params": param_counts(cfg)["total"], "seq_len": seq_len,
            "batch_size": batch_size, "vocab_size": vocab_size, "dtype": dtype,
            "step_s": seconds, "tokens_per_s": tokens_per_s,
            "flops_per_s": tokens_per_s * flops_per_token(cfg, seq_len)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="d128_l4,d256_l4,d384_l6")
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul_n", type=int, default=2048)
    args = parser.parse_args()

    device = jax.devices()[0]
    machine = {"backend": jax.default_backend(), "device": device.device_kind,
               "device_count": jax.device_count(), "cpu": platform.processor() or
               platform.machine()}
    peak = matmul_flops_per_s(args.matmul_n, jnp.dtype(args.dtype), args.repeats)
    print(json.dumps({"bench": "matmul", "n": args.matmul_n, "dtype": args.dtype,
                      "flops_per_s": peak, **machine}), flush=True)
    for size in args.sizes.split(","):
        row = train_step_figures(size, args.seq_len, args.batch_size, args.vocab_size,
                                 args.dtype, args.steps, args.repeats)
        row["fraction_of_matmul_peak"] = row["flops_per_s"] / peak
        print(json.dumps({"bench": "train_step", **row, **machine}), flush=True)


if __name__ == "__main__":
    main()
