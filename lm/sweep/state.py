"""What a sweep root holds on disk, and what each run's workdir says about its progress.

ROOT/sweep.json names the sweep that owns the root (its name, config file and runs), so a second
sweep into the same root is refused while the same sweep, run again, picks up where it stopped.
ROOT/<run name>/ is an lm.train workdir; lm.sweep adds ROOT/<run name>/sweep_run.json, the
outcome of the run's latest attempt (status, error, traceback, wall seconds over all attempts).
"""
import dataclasses
import os

from core.run_format import damaged
from lm.errors import SweepError
from lm.sweep.spec import Run
from lm.train import workdir as run_files
from lm.train.metrics_log import read_metrics

MANIFEST = "sweep.json"


@dataclasses.dataclass(frozen=True)
class Progress:
    """A workdir's state: its metrics, newest checkpoint and the latest attempt's record."""
    steps: int           # the run's train.steps
    last_row: dict       # the last row of metrics.jsonl ({}: none)
    eval_row: dict       # the last row with validation losses ({}: none)
    checkpoint: int      # newest checkpoint step (0: none)
    record: dict         # sweep_run.json ({}: no attempt has ended)

    @property
    def finished(self) -> bool:
        """The final row (step train.steps, with validation losses) is logged."""
        return self.eval_row.get("step", -1) >= self.steps

    @property
    def status(self) -> str:
        """finished, or how the latest attempt ended (diverged, failed, stopped), or pending."""
        if self.finished:
            return "finished"
        status = self.record.get("status", "pending")
        return "pending" if status == "finished" else status  # train.steps was raised since


def claim_root(root: str, sweep_name: str, config_path: str, runs: list[Run],
               write: bool) -> list[str]:
    """Checks that `root` is empty, new, or this sweep's, and (if `write`) records the sweep in
    ROOT/sweep.json. Returns the run directories in `root` that are not runs of this sweep
    (left by an earlier version of it), for the caller to report."""
    path = os.path.join(root, MANIFEST)
    existing = sorted(d for d in run_files.listdir(root)
                      if any(run_files.exists(os.path.join(root, d, m))
                             for m in run_files.RUN_MARKERS))
    owner = run_files.read_json(path)
    if owner and not all(isinstance(owner.get(key), str) for key in ("sweep", "config")):
        raise damaged(path, "it lacks the sweep's name or file")
    if owner and owner["sweep"] != sweep_name:
        raise SweepError(f"{root} holds the runs of sweep {owner['sweep']!r} "
                         f"({owner['config']}), not of {sweep_name!r} ({config_path}); give "
                         f"this sweep its own, e.g. --runs_dir={root.rstrip('/')}_{sweep_name}")
    if not owner and existing:
        raise SweepError(f"{root} already holds runs that no sweep started "
                         f"({', '.join(existing[:3])}{', ...' if len(existing) > 3 else ''}); "
                         "use an empty or new --runs_dir")
    if write:
        manifest = {"sweep": sweep_name, "config": config_path,
                    "runs": [{"name": r.name, "overrides": r.overrides} for r in runs]}
        run_files.write_json(path, manifest)
    names = {r.name for r in runs}
    return [d for d in existing if d not in names]


def progress(workdir: str, steps: int) -> Progress:
    has_rows = run_files.exists(os.path.join(workdir, run_files.METRICS))
    rows = read_metrics(workdir) if has_rows else []
    saved = [int(s) for s in run_files.listdir(os.path.join(workdir, run_files.CHECKPOINTS))
             if s.isdigit()]
    return Progress(steps=steps, last_row=rows[-1] if rows else {},
                    eval_row=next((r for r in reversed(rows)
                                   if any(k.startswith("eval/") for k in r)), {}),
                    checkpoint=max(saved, default=0), record=read_record(workdir))


def read_model_json(workdir: str) -> dict:
    """WORKDIR/model.json (parameter counts, FLOPs per token), {} before the run started."""
    return run_files.read_json(os.path.join(workdir, run_files.MODEL))


def read_record(workdir: str) -> dict:
    return run_files.read_json(os.path.join(workdir, run_files.SWEEP_RECORD))


def write_record(workdir: str, outcome: dict) -> None:
    """Stores an attempt's outcome; wall seconds add up over attempts."""
    record = {**outcome,
              "wall_s": read_record(workdir).get("wall_s", 0.0) + outcome.get("wall_s", 0.0)}
    run_files.write_json(os.path.join(workdir, run_files.SWEEP_RECORD), record)

