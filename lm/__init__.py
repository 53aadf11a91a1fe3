"""Decoder-only LMs and everything around one run and many runs, in four subsystems:

    lm.model   the transformer: layers, the matmul entry point, MX, the loss, parameter and
               FLOP counts (pure functions of parameters and tokens)
    lm.train   one run: the pure train/eval steps, the sharded jitted functions, the loop and
               its hooks, checkpoints, batches, the run's files (`python -m lm.train`)
    lm.sweep   many runs: sweep files, their workdirs and executors (`python -m lm.sweep`)
    lm.study   the optimizer-comparison study and its report (`python -m lm.study`)

Dependencies point one way, study -> sweep -> train -> model; lm.errors is shared by all.
"""
from core.accelerators import cpu_unless_accelerators

cpu_unless_accelerators()  # before JAX is imported: a CPU machine runs quietly on the CPU
