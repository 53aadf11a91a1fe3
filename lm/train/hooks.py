"""The per-step work of the training loop, each piece at its own interval (levanter's hooks
with `every=`).

A hook runs after the steps that are multiples of its `every` (never when `every` is 0) and, if
`at_end`, after the last step. It returns the fields it adds to that step's metrics row, or None
when it adds no row; the loop writes one row for each step that some hook asked for, beginning
with the step's training metrics (lm/train/loop.py). Hooks run in list order, so `check_finite`
comes first: nothing from a step whose loss is not finite reaches a checkpoint.

The loop reads a step's metrics while the next step runs; a hook that `uses_state` (evaluation,
checkpoints) makes its steps synchronous: the loop hands it that step's state before it
dispatches the next step, which takes the state's buffers. Other hooks see `state` None.
"""
import dataclasses
import math
from typing import Callable, NamedTuple

import jax

from lm.train import batches
from lm.train.checkpoint import Checkpointer
from lm.train.loss_spikes import LossSpikes
from lm.train.step import TrainState


class StepResult(NamedTuple):
    """What one train step produced, as the hooks see it."""
    step: int                # optimizer steps completed
    state: TrainState | None  # the state after that step (on the devices), for the hooks
                              # that use it; None otherwise
    metrics: dict            # the step's training metrics, host floats
    layer_stats: dict        # per-layer RMS statistics, host floats ({} unless computed)


@dataclasses.dataclass(frozen=True)
class Hook:
    name: str
    every: int
    run: Callable[[StepResult], dict | None]
    at_end: bool = False
    uses_state: bool = False

    def due(self, step: int, last: bool) -> bool:
        return (self.every > 0 and step % self.every == 0) or (last and self.at_end)


def check_finite(checkpointer: Checkpointer) -> Hook:
    """Stops the run at the first non-finite metric (loss, a norm, ...), before that state can
    be saved; the message names the metrics that are not finite (the loss and gradient norm may
    well be, e.g. when the update norm overflows at a huge learning rate)."""
    def run(result: StepResult) -> None:
        bad = {k: v for k, v in result.metrics.items() if not math.isfinite(v)}
        if not bad:
            return None
        checkpointer.wait()
        good = checkpointer.steps()
        raise FloatingPointError(
            f"{', '.join(f'{k}={v}' for k, v in sorted(bad.items()))} at step {result.step}: "
            f"not finite (training loss {result.metrics['train/loss']}, gradient norm "
            f"{result.metrics['train/grad_norm']}); stopped "
            f"without saving. The last good checkpoint "
            f"({'step ' + str(good[-1]) if good else 'none'}) is kept in "
            f"{checkpointer.directory}. Lower optimizer.lr, raise schedule.warmup_steps or set "
            "model.z_loss / model.qk_norm, then rerun with a new --workdir.")
    return Hook("check_finite", 1, run)


def count_loss_spikes(spikes: LossSpikes) -> Hook:
    """Feeds every step's loss to the spike counter (the rows report its count)."""
    def run(result: StepResult) -> None:
        spikes.update(result.metrics["train/loss"])
    return Hook("loss_spikes", 1, run)


def profile(window: tuple[int, int], directory: str) -> Hook:
    """A jax.profiler trace from after step FIRST - 1 to after step LAST (`window`) into
    `directory`. The loop reads a step's metrics while the next one runs, so the trace starts
    while step FIRST runs and ends during step LAST + 1."""
    first, last = window
    tracing = [False]

    def run(result: StepResult) -> None:
        if not tracing[0] and first - 1 <= result.step < last:
            jax.profiler.start_trace(directory)
            tracing[0] = True
        elif tracing[0] and result.step >= last:
            jax.profiler.stop_trace()
            tracing[0] = False
    return Hook("profile", 1, run, at_end=True)


def log_row(every: int) -> Hook:
    """A metrics row of the training metrics alone."""
    return Hook("log_row", every, lambda result: {})


def layer_stats(every: int) -> Hook:
    """The RMS of each parameter, gradient and update (the loop runs the train step that
    computes them on the steps where this hook is due)."""
    return Hook("layer_stats", every, lambda result: result.layer_stats)


def evaluate(every: int, eval_step, eval_params, eval_sets: dict, batch_sharding) -> Hook:
    """Validation loss (nats/token) and bits per byte on each set's fixed windows, at the
    parameters `eval_params(opt_state, params)` (schedule-free methods evaluate elsewhere)."""
    def run(result: StepResult) -> dict:
        params = eval_params(result.state.opt_state, result.state.params)
        out = {}
        for name, eval_set in eval_sets.items():
            nats = sum(float(eval_step(params, batches.to_device(batches.process_rows(w),
                                                                 batch_sharding)))
                       for w in eval_set.batches)
            loss = nats / eval_set.num_targets
            out[f"eval/{name}/loss"] = loss
            out[f"eval/{name}/bpb"] = loss / math.log(2) / eval_set.bytes_per_token
        return out
    return Hook("evaluate", every, run, at_end=True, uses_state=True)


def harness(every: int, eval_params, evaluate_tasks) -> Hook:
    """lm-evaluation-harness tasks on the live parameters `eval_params(opt_state, params)`:
    `evaluate_tasks(params, step)` returns the row's harness/<task>/<metric> fields
    (lm/train/harness.py)."""
    def run(result: StepResult) -> dict:
        return evaluate_tasks(eval_params(result.state.opt_state, result.state.params),
                              result.step)
    return Hook("harness", every, run, at_end=True, uses_state=True)


def save_checkpoint(every: int, checkpointer: Checkpointer, tokens_per_step: int) -> Hook:
    def run(result: StepResult) -> None:
        checkpointer.save(result.step, result.state,
                          {"step": result.step, "tokens": result.step * tokens_per_step})
    return Hook("checkpoint", every, run, at_end=True, uses_state=True)
