"""The training loop of one run: `run(config, workdir)` trains or resumes it and returns a summary.

`run` builds the run (lm/train/build.py), starts from a checkpoint, a branch or fresh parameters
(lm/train/restore.py), and passes each step that `steps` yields through the hooks
(lm/train/hooks.py), which do the per-step work at their own intervals: metrics rows,
evaluation, per-layer statistics, checkpoints. Starting on a workdir that has checkpoints
resumes from the newest good one, bit-identically on the same machine. SIGTERM / SIGINT finish
the current step, save a checkpoint and return.
"""
import contextlib
import os
import signal
import time
from typing import Iterator

import jax

from core import cli
from lm.train import batches, distributed, hooks, loggers, provenance
from lm.train import workdir as run_files
from lm.train.build import Run, build
from lm.train.checkpoint import Checkpointer
from lm.train.config_checks import profile_window
from lm.train.hooks import Hook, StepResult
from lm.train.loss_spikes import LossSpikes
from lm.train.metrics_log import MetricsLog
from lm.train.restore import restore_or_init


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


STOP_CHECK_EVERY = 10  # steps between the processes' agreement on a stop signal


def steps(run: Run, state, start: int, stop: StopRequested, hooks: list[Hook]
          ) -> Iterator[StepResult]:
    """Runs the train steps after `start` up to train.steps and yields each one's results.

    The host never waits for the device without need: step n + 1 is dispatched before step
    n's metrics are read (nanodo and MaxText do the same), batches come from a background
    Prefetcher, and in multi-process runs the processes agree on a stop every
    STOP_CHECK_EVERY steps. At a step where a hook that uses the state is due (evaluation, a
    checkpoint, the last step) the loop yields before dispatching the next step, which takes
    the state's buffers. A stop signal ends the loop at the next step boundary (on every
    process at once); the last dispatched step is still yielded."""
    total = run.config.train.steps
    multi = jax.process_count() > 1
    prefetch = batches.Prefetcher(run.data.train_batch, run.rt.sharder.batch, start)
    stats_hooks = [h for h in hooks if h.name == "layer_stats"]
    pending = None
    try:
        for step in range(start + 1, total + 1):
            if (not multi or step % STOP_CHECK_EVERY == 0) and distributed.any_process(
                    stop.signal_name is not None):
                stop.signal_name = stop.signal_name or "a signal to another process"
                break
            with_stats = any(h.due(step, step == total) for h in stats_hooks)
            train_step = run.rt.train_step_with_stats if with_stats else run.rt.train_step
            state, metrics, stats = train_step(state, prefetch.next())
            if pending is not None:
                yield _fetched(pending)
            pending = (step, state, metrics, stats)
            if any(h.uses_state and h.due(step, step == total) for h in hooks):
                yield _fetched(pending, with_state=True)
                pending = None
        if pending is not None:
            yield _fetched(pending, with_state=True)
    finally:
        prefetch.close()


def _fetched(pending, with_state: bool = False) -> StepResult:
    """A dispatched step's results with its metrics on the host (this waits for the step)."""
    step, state, metrics, stats = pending
    return StepResult(step, state if with_state else None, _to_host(metrics), _to_host(stats))


class MetricsRows:
    """The rows of metrics.jsonl: each starts with its step's training metrics, the learning
    rate, the spike count and the time per step since the previous row (the hooks' own time,
    evaluation and checkpoint writes, left out); the hooks' fields follow."""

    def __init__(self, run: Run, metrics_log: MetricsLog | None, start: int, spikes: LossSpikes,
                 writers: loggers.Writers | None = None):
        self.run, self.metrics_log, self.spikes, self.writers = run, metrics_log, spikes, writers
        self.since, self.hook_seconds = (time.perf_counter(), start), 0.0
        self.last = {}

    def learning_rate(self, step: int) -> float:
        """The lr of `step`, evaluated on the host's CPU: logging never waits on the device."""
        with jax.default_device(jax.local_devices(backend="cpu")[0]):
            return float(self.run.optimizer.schedule(step - 1))

    def after_step(self, result: StepResult, due: list[Hook]) -> dict | None:
        """Runs the `due` hooks on `result`; returns the row written, if any hook asked."""
        begin = time.perf_counter()
        fields = [hook.run(result) for hook in due]
        self.hook_seconds += time.perf_counter() - begin
        if all(f is None for f in fields):
            return None
        now, (then, since_step) = time.perf_counter(), self.since
        seconds = (now - then - self.hook_seconds) / max(result.step - since_step, 1)
        self.since, self.hook_seconds = (now, result.step), 0.0
        tokens = result.step * self.run.tokens_per_step
        row = {"step": result.step, "tokens": tokens,
               "flops": tokens * self.run.info["flops_per_token"], **result.metrics,
               "train/lr": self.learning_rate(result.step),
               "train/loss_spikes": self.spikes.count,
               "time/step_s": seconds, "time/tokens_per_s": self.run.tokens_per_step / seconds}
        for extra in fields:
            row.update(extra or {})
        if self.metrics_log is not None:
            self.metrics_log.write(row)
        if self.writers is not None:
            self.writers.write(row)
        self.last = row
        return row


def default_hooks(run: Run, checkpointer: Checkpointer, spikes: LossSpikes) -> list[Hook]:
    t = run.config.train
    eval_params = jax.jit(run.optimizer.eval_params,
                          out_shardings=run.rt.state_shardings.params)
    profiling = ([hooks.profile(profile_window(t.profile_steps),
                                os.path.join(run.workdir, run_files.PROFILE))] if t.profile_steps
                 else [])
    harness = []
    if t.get("harness_tasks"):
        # lm_eval loads only for the runs that use it
        from lm.train.harness import training_evaluator
        harness = [hooks.harness(t.harness_every, eval_params, training_evaluator(run))]
    return [hooks.check_finite(checkpointer),
            hooks.count_loss_spikes(spikes),
            *profiling,
            hooks.log_row(t.log_every),
            hooks.layer_stats(t.layer_stats_every),
            hooks.evaluate(t.eval_every, run.rt.eval_step, eval_params, run.data.eval_sets,
                           run.rt.sharder.batch),
            *harness,
            hooks.save_checkpoint(t.checkpoint_every, checkpointer, run.tokens_per_step)]


def run(config, workdir: str) -> dict:
    """Trains (or resumes) the run in `workdir`; returns a summary dict. Every process of a
    multi-process run calls it; process 0 holds the workdir's lock (one trainer per workdir)
    and writes the run files and metrics."""
    with run_files.held(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
        return _run(config, workdir)


def _run(config, workdir: str) -> dict:
    r = build(config, workdir)
    total = config.train.steps
    checkpointer = Checkpointer(workdir, config.train.keep_checkpoints)
    metrics_log = MetricsLog(workdir) if r.primary else None
    start, state = restore_or_init(r, checkpointer, metrics_log)
    if start >= total:
        checkpointer.close()
        return _complete(r, start)
    if metrics_log is not None:
        metrics_log.resume_at(start)
        provenance.record(workdir, start)
    logged = metrics_log.last_row() if metrics_log is not None else {}
    spikes = LossSpikes(config.train.loss_spike_window, config.train.loss_spike_ratio,
                        int(logged.get("train/loss_spikes", 0)))
    all_hooks = default_hooks(r, checkpointer, spikes)
    writers = (loggers.Writers(config.train.loggers, workdir, start, config) if r.primary
               else None)
    rows = MetricsRows(r, metrics_log, start, spikes, writers)
    bar = cli.progress(total=total, initial=start, desc="train", unit="step", mininterval=1.0,
                       disable=not r.primary)
    step = start
    with StopRequested() as stop:
        for result in steps(r, state, start, stop, all_hooks):
            step = result.step
            if result.state is not None:  # the last result always carries its state
                state = result.state
            row = rows.after_step(result, [h for h in all_hooks if h.due(step, step == total)])
            if row is not None:
                bar.set_postfix(loss=f"{row['train/loss']:.3f}",
                                tok_s=f"{row['time/tokens_per_s']:.0f}")
            bar.update(1)
        bar.close()
        if writers is not None:
            writers.close()
        if stop.signal_name is not None and step not in checkpointer.steps():
            checkpointer.save(step, state, {"step": step, "tokens": step * r.tokens_per_step})
        checkpointer.close()
    return _finish(r, checkpointer, rows.last, step, stop.signal_name)


def _complete(r: Run, step: int) -> dict:
    if r.primary:
        print(f"the run in {r.workdir} is complete: its checkpoint is at step {step} and "
              f"train.steps={r.config.train.steps}; raise --config.train.steps to train "
              "further", flush=True)
    return {"step": step, "tokens": step * r.tokens_per_step, "stopped": None}


def _finish(r: Run, checkpointer: Checkpointer, last_row: dict, step: int,
            stopped: str | None) -> dict:
    tokens = step * r.tokens_per_step
    if r.primary and stopped is not None:
        print(f"stopped by {stopped} at step {step}; checkpoint saved in "
              f"{checkpointer.directory}. Rerun the same command to resume.", flush=True)
    elif r.primary:
        evals = "  ".join(f"{k}={v:.4f}" for k, v in last_row.items() if k.startswith("eval/"))
        print(f"done: {step} steps, {tokens:,} tokens, "
              f"train/loss={last_row.get('train/loss', float('nan')):.4f}  {evals}", flush=True)
    return {**last_row, "step": step, "tokens": tokens, "stopped": stopped}


def _to_host(tree: dict) -> dict:
    return {k: float(v) for k, v in jax.device_get(tree).items()}
