"""Timing train steps: a run config's runtime on random tokens, and the median seconds per step.
The study's step-time ratios (lm/study/step_times.py) and the benchmarks use it."""
import statistics
import time

import jax
import numpy as np

from lm.model import ModelConfig
from lm.train import runtime, sharding


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of fn() (which must block until its result is ready)."""
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(config, seq_len: int, vocab_size: int, devices=None):
    """(runtime, initial state, optimizer) of `config` on the mesh that config.mesh describes
    over `devices` (default: all of the default backend's), in the precision config.precision
    describes ("auto" settings resolved for those devices); config.train.batch_size must be
    the batch the caller feeds."""
    opt = runtime.build_optimizer(config)
    model_cfg = ModelConfig.for_run(config, vocab_size,
                                    backend=devices[0].platform if devices else None)
    rt = runtime.build(model_cfg, opt.tx, sharding.from_config(config, devices), seed=0,
                       seq_len=seq_len, loss_chunk=runtime.loss_chunk(config, model_cfg))
    return rt, rt.init_state(), opt


def random_windows(rt, batch_size: int, seq_len: int, vocab_size: int) -> jax.Array:
    windows = np.random.default_rng(0).integers(0, vocab_size, (batch_size, seq_len + 1))
    return jax.device_put(windows.astype(np.int32), rt.sharder.batch)


def time_steps(rt, state, windows, steps: int, repeats: int) -> float:
    """Median seconds per train step (the state is updated in place, donated)."""
    holder = [state]

    def run_steps():
        for _ in range(steps):
            holder[0], metrics, _ = rt.train_step(holder[0], windows)
        jax.block_until_ready(metrics)

    return median_seconds(run_steps, repeats) / steps
