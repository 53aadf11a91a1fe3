"""One training run: `python -m lm.train --config=... --workdir=...`, or `lm.train.run(config,
workdir)` from Python.

    build.py          checks and builds everything a run needs before its first step
    restore.py        resume from a checkpoint, branch from another run, or start fresh
    loop.py           the loop: steps, hooks, metrics rows, signals, the summary
    hooks.py          the per-step work, each with its interval: rows, evaluation, checkpoints
    harness.py        the run's model as an lm-evaluation-harness LM; harness tasks on it
                      (python -m lm.evaluate, train.harness_tasks)
    step.py           the pure train and eval steps
    runtime.py        those steps jitted and sharded on the run's mesh
    sharding.py       the device mesh, logical axis rules, shardings of state and batches
    checkpoint.py     Orbax checkpoints with fallback past a corrupt one
    batches.py        prepared data -> device batches and validation sets
    distributed.py    multi-process set-up;  cli.py  python -m lm.train
    config_flag.py    --config=FILE[:ARG] and its --config.KEY=VALUE overrides (lm.train,
                      lm.compile, benchmarks)
    metrics_log.py    metrics.jsonl;  loss_spikes.py  the spike counter
    settings.py       config.train, .mesh, .precision: defaults, docs, allowed values (JAX-free),
                      and `run_config`, the whole run config assembled from every subsystem's
    config_checks.py  config checks before anything compiles
    workdir.py        every file name of a run directory (a path or a gs:// URL), written all
                      or nothing, through one path layer
    timing.py         seconds per train step, on random tokens (the study, the benchmarks)
    coord_check.py    muP's coordinate check (python -m lm.train.coord_check)
    prepare_data.py   a config's data checked (--check) or prepared before a run, e.g. once
                      for a whole pod (python -m lm.train.prepare_data)
"""
from core import lazy

# Loaded on first use, so that `lm.train.settings` is importable without JAX.
__getattr__, __dir__ = lazy.exports(__name__, {"run": ".loop"})
