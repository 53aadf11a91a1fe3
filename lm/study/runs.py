"""The study's runs as lm.sweep points: how a point becomes a run config, each phase's sweep
root, reading back a run's loss, and training a phase here or handing it to a TPU pod.

A study point is a dict of lm.sweep keys: always size, steps, optimizer and seed, the
optimizer's hyperparameters (lr, warmup, grad_clip and its own section's keys, e.g. b2), and
`dataset` for runs on another corpus than the prose one.
"""
import math
import os
import shlex
import sys

import ml_collections

from lm.model import ladder
from lm.study.tune import point_id
from lm.sweep.runner import run_sweep
from lm.sweep.spec import Sweep, evaluations, expand, run_length, run_model_info
from lm.sweep.state import progress, read_record
from lm.train import workdir as run_files
from lm.train.settings import run_config

# Keys that identify a run apart from the optimizer's hyperparameters.
RUN_KEYS = ("size", "dataset", "optimizer", "seed", "steps")


def base_config(preset) -> ml_collections.ConfigDict:
    return preset.run.copy_and_resolve_references()


def non_embedding_params(preset, size: str) -> int:
    config = base_config(preset)
    ladder.apply_size(config.model, size)
    return run_model_info(config)["params/non_embedding"]


def batch_tokens(preset) -> int:
    return preset.run.train.batch_size * preset.run.data.seq_len


def steps_at(preset, size: str) -> int:
    """Train steps of a 1x-data run at `size`: preset.steps, or tokens_per_param x N
    (non-embedding) tokens."""
    if preset.steps:
        return int(preset.steps)
    return max(1, round(preset.tokens_per_param * non_embedding_params(preset, size)
                        / batch_tokens(preset)))


def budget_steps(preset, size: str, multiplier: float) -> int:
    """Train steps of a run at `size` on `multiplier` x the 1x data."""
    return max(1, round(multiplier * steps_at(preset, size)))


def point(preset, size: str, optimizer: str, settings: dict, *, seed: int = 0,
          multiplier: float = 1.0, dataset: str | None = None) -> dict:
    """The study point of `optimizer` with `settings` (its searched hyperparameters) at
    `size`, trained for `multiplier` x the 1x steps on the prose corpus (or `dataset`)."""
    found = {"size": size, "optimizer": optimizer, "seed": seed,
             "steps": budget_steps(preset, size, multiplier), **settings}
    if dataset and dataset != preset.prose:
        found["dataset"] = dataset
    return found


def settings_of(found: dict) -> dict:
    """The hyperparameters of a study point (its keys other than RUN_KEYS)."""
    return {k: v for k, v in found.items() if k not in RUN_KEYS}


def sweep(preset, points: list[dict]) -> Sweep:
    """The sweep of `points`, each validated `preset.evals` times, with the run-length
    schedules set to its steps; names always hold optimizer, lr and seed."""
    return Sweep(base_config(preset), list(points),
                 rules=(evaluations(preset.evals), run_length(*preset.run_length_fields)),
                 always_named=("optimizer", "lr", "seed"))


class Catalog:
    """Points, workdirs and run configs of the study's runs, over its phases' roots."""

    def __init__(self):
        self.points = {}     # point_id -> point
        self.workdirs = {}   # point_id -> workdir
        self.configs = {}    # point_id -> run config

    def add(self, root: str, phase_sweep: Sweep) -> None:
        for run, found in zip(expand(phase_sweep), phase_sweep.points):
            key = point_id(found)
            self.points[key], self.configs[key] = found, run.config
            self.workdirs[key] = os.path.join(root, run.name)

    def __contains__(self, found: dict) -> bool:
        return point_id(found) in self.workdirs

    def workdir(self, found: dict) -> str:
        return self.workdirs[point_id(found)]

    def loss(self, found: dict) -> float | None:
        """The run's final validation loss on its training corpus; inf if it failed or
        diverged; None if it has not finished (or is not in the catalog)."""
        key = point_id(found)
        if key not in self.workdirs:
            return None
        config = self.configs[key]
        state = progress(self.workdirs[key], config.train.steps)
        if state.finished:
            value = state.eval_row.get(f"eval/{config.data.corpus}/loss", math.inf)
            return value if math.isfinite(value) else math.inf
        return math.inf if state.status in ("failed", "diverged") else None

    def corpus(self, name: str) -> str:
        """Corpus `name` for a report: its source and the fingerprint of the prepared data the
        runs read (their data.json), so that a study names exactly what it trained on."""
        for key, workdir in self.workdirs.items():
            record = run_files.read_json(os.path.join(workdir, run_files.DATA)).get(name)
            if record:
                source = dict(self.configs[key].data.sources or {}).get(name, record["source"])
                named = f"`{name}`" + (f" (`{source}`)" if source != name else "")
                return f"{named}, fingerprint {record['fingerprint']}"
        return f"`{name}` (no finished run read it)"

    def summary(self) -> tuple[dict, float]:
        """(status -> run count, the runs' summed wall seconds over their attempts)."""
        counts, wall = {}, 0.0
        for key, workdir in self.workdirs.items():
            status = progress(workdir, self.configs[key].train.steps).status
            counts[status] = counts.get(status, 0) + 1
            wall += read_record(workdir).get("wall_s", 0.0)
        return counts, wall


def run_phase(phase_sweep: Sweep, out: str, phase: str, args, executor,
              only: set | None = None, notes: dict | None = None) -> bool:
    """Trains (or lists, or writes launch commands for) one phase's runs into DIR/<phase>;
    True once they are all finished or ended (failed and diverged runs are reported, not
    retried forever). `only`: the names to train (the others are left as they are); `notes`:
    comments for the launch script (`launch_commands`)."""
    root = os.path.join(out, phase)
    command = f"python -m lm.study --preset={args.preset} --runs_dir={out}"
    if args.launch == "tpu":
        script = os.path.join(out, f"launch_{phase.replace('/', '_')}.sh")
        commands = launch_commands(phase_sweep, root, only, notes)
        if args.dry_run:
            print(f"{phase}: {len(commands)} runs to train on TPU; without --dry_run they go to "
                  f"{script}")
            return not commands
        if commands:
            write_launch_script(script, commands)
            print(f"{phase}: {len(commands)} runs to train on TPU: {script}; rerun `{command}` "
                  "once they are finished")
            return False
        return True
    if not args.dry_run:  # the sweep's progress bar follows, named after the phase
        print(f"study phase {phase}: {root}", flush=True)
    stop = getattr(args, "stop", None)
    status = run_sweep(phase_sweep, root, name=f"study_{phase.replace('/', '_')}",
                       config_path=command, executor=executor, dry_run=args.dry_run,
                       only=only, select_lr=False, stop=stop)
    if args.dry_run:
        return True
    left = unended(phase_sweep, root, only)
    if (stop and stop.is_set()) or left:
        print(f"study stopped in phase {phase} ({len(left)} runs not ended: stopped, or another "
              f"trainer holds their workdirs); rerun the same command to resume it",
              file=sys.stderr, flush=True)
        return False
    if status:
        print(f"{phase}: some runs failed (see {os.path.join(root, 'results.csv')}); the "
              "study goes on without them", file=sys.stderr)
    return True


def unended(phase_sweep: Sweep, root: str, only: set | None = None) -> list[str]:
    """The names of the runs (of `only`, if given) that have neither finished nor ended in
    failure or divergence: stopped, or left as they were because another trainer held them.
    The study does not go on without them (it would tune on a partial round)."""
    return [run.name for run in expand(phase_sweep)
            if (only is None or run.name in only) and progress(
                os.path.join(root, run.name), run.config.train.steps).status
            in ("pending", "stopped")]


def launch_commands(phase_sweep: Sweep, root: str, only: set | None = None,
                    notes: dict | None = None) -> list[str]:
    """One launch_tpu.sh command per unfinished run of `phase_sweep` (overrides relative to
    configs/base.py); a run with a note (`notes`: point_id -> text) gets a "# note" line
    before its command where the note differs from the previous command's."""
    defaults = _flat(run_config())
    commands, previous = [], ""
    for run, found in zip(expand(phase_sweep), phase_sweep.points):
        workdir = os.path.join(root, run.name)
        if progress(workdir, run.config.train.steps).finished or (
                only is not None and run.name not in only):
            continue
        overrides = [f"--config.{key}={_flag_value(value)}"
                     for key, value in _flat(run.config).items() if defaults.get(key) != value]
        command = " ".join(["./launch_tpu.sh", '--name "$TPU_NAME"', '--zone "$ZONE"',
                            '--project "$PROJECT"', '--accelerator "$ACCELERATOR"',
                            "--config configs/base.py", f"--workdir {shlex.quote(workdir)}",
                            "--", *map(shlex.quote, overrides)])
        note = (notes or {}).get(point_id(found), "")
        commands.append(f"# {note}\n{command}" if note and note != previous else command)
        previous = note
    return commands


def write_launch_script(path: str, commands: list[str]) -> None:
    """An executable script of `commands`, in a directory made if need be."""
    lines = ["#!/usr/bin/env bash",
             "# One TPU pod run per line (launch_tpu.sh); set TPU_NAME, ZONE, PROJECT and",
             "# ACCELERATOR. Workdirs must be the shared directory lm.study reads.",
             "set -euo pipefail", *commands]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o755)


def _flat(config, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _flag_value(value) -> str:
    return repr(value) if isinstance(value, (tuple, list)) else str(value)
