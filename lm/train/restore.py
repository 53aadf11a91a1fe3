"""Where a run starts: the newest good checkpoint of its own workdir, else another run's
checkpoint (a branch, train.branch_from), else a Hugging Face model's weights
(train.init_from), else fresh parameters."""
import os

import jax

from lm.errors import ConfigError
from lm.hf import load as hf_load
from lm.train import workdir as run_files
from lm.train.build import Run
from lm.train.checkpoint import Checkpointer
from lm.train.metrics_log import MetricsLog, read_metrics
from lm.train.step import init_state


def restore_or_init(run: Run, checkpointer: Checkpointer, metrics_log: MetricsLog | None):
    """(step, state) to start from (a branch starts metrics.jsonl with its parent's rows)."""
    restored = checkpointer.restore_latest(run.rt.abstract_state)
    train = run.config.train
    if restored is None and train.branch_from:
        restored = branch(run, train.branch_from, train.branch_step, metrics_log)
    if restored is None and train.init_from:
        return 0, init_from(run, train.init_from)
    if restored is None:
        return 0, run.rt.init_state()
    step, state, _ = restored
    if run.primary and step < train.steps:
        print(f"resumed from the checkpoint at step {step}", flush=True)
    return step, state


def branch(run: Run, source: str, step: int, metrics_log: MetricsLog | None):
    """(step, state, meta) of run `source`'s checkpoint at `step` (-1: its newest that restores),
    read-only; the branch's metrics.jsonl starts with the source's rows up to that step."""
    if not run_files.isdir(os.path.join(source, run_files.CHECKPOINTS)):
        raise ConfigError(f"train.branch_from={source!r} has no {run_files.CHECKPOINTS}/ "
                          "folder; give the workdir of a run that saved checkpoints")
    run_files.check_model(source, run.model_cfg)
    parent = Checkpointer(source, 1, read_only=True)
    steps = parent.steps()
    if step != -1 and step not in steps:
        raise ConfigError(f"train.branch_step={step}: {source} has checkpoints at steps "
                          f"{steps}; use one of those (or -1, the newest)")
    try:  # the source may be training still: a checkpoint it is writing is skipped
        step, state, meta = parent.restore_readable(run.rt.abstract_state, step,
                                                    "train.branch_step")
    finally:
        parent.close()
    if metrics_log is not None:
        metrics_log.start_from([r for r in read_metrics(source) if r["step"] <= step])
        print(f"branched from {source} at step {step}", flush=True)
    return step, state, meta


def init_from(run: Run, source: str):
    """The step-0 state of a run whose parameters are hf:DIR's (lm/hf/load.py): the optimizer
    state starts fresh, as in a new run, sharded as the run's."""
    params = hf_load.params(source, run.model_cfg, run.rt.abstract_state.params)
    state = jax.jit(lambda p: init_state(p, run.optimizer.tx),
                    out_shardings=run.rt.state_shardings)(params)
    if run.primary:
        print(f"initialised from {source}", flush=True)
    return state
