"""The study's phases: the prose grid, the follow-up runs, and the fits and report, each phase
an lm.sweep root under the study's directory (see lm/study/cli.py for the whole job)."""
import csv
import json
import os
import platform
import shlex
import sys
import time

import ml_collections

import optim
from configs import base
from configs import study as presets
from lm.errors import SweepError
from lm.study import report as study_report
from lm.sweep.executors import InProcess, LocalProcesses, RayCluster
from lm.sweep.runner import run_sweep
from lm.sweep.spec import (
    Sweep,
    evaluations,
    expand,
    lr_grid,
    product,
    run_length,
    warmup_fraction,
)
from lm.sweep.state import progress
from lm.train import workdir as run_files

MANIFEST = "study.json"
PHASES = ("prose", "followup")
BASELINE = "adamw"


def grid_sweep(preset) -> Sweep:
    """Phase 1: sizes x optimizers x lr grids on the prose corpus."""
    grids = {name: preset.lr_grids[name] for name in preset.optimizers}
    return Sweep(_base(preset), product(lr_grid(grids), size=list(preset.sizes)),
                 rules=_rules(preset), always_named=("size", "optimizer", "lr"))


def followup_sweep(preset, best_lr: dict) -> Sweep:
    """Phase 2: AdamW at its best lr of each size (`best_lr`: size -> lr) on the other data
    budgets, and on the code corpus at the shared step count."""
    budgets = [{"size": size, "dataset": preset.prose, "optimizer": BASELINE, "lr": lr,
                "steps": max(1, round(preset.steps * m))}
               for size, lr in best_lr.items() for m in preset.data_multipliers]
    code = [{"size": size, "dataset": preset.code, "optimizer": BASELINE, "lr": best_lr[size],
             "steps": preset.steps} for size in preset.code_sizes if size in best_lr]
    return Sweep(_base(preset), budgets + code, rules=_rules(preset),
                 always_named=("size", "dataset", "optimizer", "lr", "steps"))


def _base(preset) -> ml_collections.ConfigDict:
    config = preset.run.copy_and_resolve_references()
    config.train.steps = preset.steps
    return config


def _rules(preset) -> tuple:
    return (warmup_fraction(0.1), evaluations(preset.evals),
            run_length(*preset.run_length_fields))


def load_preset(args) -> ml_collections.ConfigDict:
    """The preset with the command line's optimizers and lr grids; errors name the fix."""
    try:
        preset = presets.get_preset(args.preset)
    except ValueError as err:
        raise SweepError(str(err)) from err
    for spec in args.lr_grid:
        name, _, values = spec.partition(":")
        try:
            preset.lr_grids[name] = [float(v) for v in values.split(",") if v]
        except ValueError:
            raise SweepError(f"--lr-grid={spec}: give NAME:LR,LR,... e.g. lion:3e-4,1e-3")
        if not preset.lr_grids[name]:
            raise SweepError(f"--lr-grid={spec}: the grid of {name!r} is empty")
    if args.optimizers:
        preset.optimizers = [name for name in args.optimizers.split(",") if name]
    registered = optim.registered_optimizers()
    for name in preset.optimizers:
        if name not in registered:
            raise SweepError(f"--optimizers: {name!r} is not a registered optimizer; use some "
                             f"of {', '.join(registered)}")
        if name not in preset.lr_grids:
            raise SweepError(f"no lr grid for {name!r}; give one, e.g. --lr-grid={name}:1e-3,"
                             "3e-3,1e-2")
    if BASELINE not in preset.optimizers:
        raise SweepError(f"the study measures every optimizer against {BASELINE}; keep it in "
                         f"--optimizers (got {', '.join(preset.optimizers)})")
    if len(preset.sizes) < 4:
        print(f"warning: {len(preset.sizes)} sizes; the compute law holds out the largest "
              "runs and needs at least 4 sizes to fit the rest", file=sys.stderr)
    return preset


def claim_out(out: str, preset_name: str, preset) -> None:
    """`out` is new, empty, or a study of the same preset; records the study in DIR/study.json."""
    path = os.path.join(out, MANIFEST)
    if os.path.exists(path):
        with open(path) as f:
            owner = json.load(f)
        if owner["preset"] != preset_name:
            raise SweepError(f"{out} holds a study of preset {owner['preset']!r}, not "
                             f"{preset_name!r}; give this one its own --out")
    elif os.path.isdir(out) and os.listdir(out):
        raise SweepError(f"{out} is not empty and holds no {MANIFEST}: it is not a study "
                         "directory; use a new or empty --out")
    os.makedirs(out, exist_ok=True)
    run_files.write_text(path, json.dumps({"preset": preset_name, "settings": preset.to_dict()},
                                          indent=2, default=str))


def best_lrs(root: str, optimizer: str) -> dict:
    """size -> best lr of `optimizer` from ROOT/best_lr.csv (sizes whose runs all failed are
    missing)."""
    path = os.path.join(root, "best_lr.csv")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {row["size"]: float(row["best_lr"]) for row in csv.DictReader(f)
                if row["optimizer"] == optimizer and row["best_lr"]}


def launch_script(path: str, sweep: Sweep, root: str) -> int:
    """Writes one launch_tpu.sh command per unfinished run of `sweep` (overrides relative to
    configs/base.py); returns how many."""
    defaults = _flat(base.get_config())
    lines = ["#!/usr/bin/env bash",
             "# One TPU pod run per line (launch_tpu.sh); set TPU_NAME, ZONE, PROJECT and",
             "# ACCELERATOR. Workdirs must be the shared directory lm.study reads.",
             "set -euo pipefail"]
    count = 0
    for run in expand(sweep):
        workdir = os.path.join(root, run.name)
        if progress(workdir, run.config.train.steps).finished:
            continue
        overrides = [f"--config.{key}={_flag_value(value)}"
                     for key, value in _flat(run.config).items() if defaults.get(key) != value]
        lines.append(" ".join(["./launch_tpu.sh", '--name "$TPU_NAME"', '--zone "$ZONE"',
                               '--project "$PROJECT"', '--accelerator "$ACCELERATOR"',
                               "--config configs/base.py", f"--workdir {shlex.quote(workdir)}",
                               "--", *map(shlex.quote, overrides)]))
        count += 1
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o755)
    return count


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


def run_phase(sweep: Sweep, out: str, phase: str, args, executor) -> bool:
    """Trains (or lists, or writes launch commands for) one phase; True if all its runs are
    finished or ended (failed or diverged runs are reported, not retried forever)."""
    root = os.path.join(out, phase)
    command = f"python -m lm.study --preset={args.preset} --out={out}"
    if args.launch == "tpu":
        script = os.path.join(out, f"launch_{phase}.sh")
        left = launch_script(script, sweep, root)
        if left:
            print(f"{phase}: {left} runs to train on TPU: {script}; rerun `{command}` once "
                  "they are finished")
            return False
        return True
    status = run_sweep(sweep, root, name=f"study_{phase}", config_path=command,
                       executor=executor, dry_run=args.dry_run)
    if status:
        print(f"{phase}: some runs failed (see {os.path.join(root, 'results.csv')}); the "
              "study goes on without them", file=sys.stderr)
    return True


def run_study(args) -> int:
    start = time.perf_counter()
    preset = load_preset(args)
    out = os.path.abspath(args.out)
    grid = grid_sweep(preset)
    placeholder = {size: preset.lr_grids[BASELINE][0] for size in preset.sizes}
    for sweep in (grid, followup_sweep(preset, placeholder)):
        expand(sweep)  # every check before anything trains
    if not args.dry_run:
        claim_out(out, args.preset, preset)
    executor = _executor(args, preset)
    if not run_phase(grid, out, "prose", args, executor):
        return 0
    chosen = best_lrs(os.path.join(out, "prose"), BASELINE)
    if args.dry_run:
        print("followup (AdamW data budgets and code ladder; lrs are placeholders until the "
              "prose phase has selected them):")
        chosen = chosen or placeholder
    if not chosen:
        print(f"error: no {BASELINE} run of the prose phase finished; nothing to compare "
              "against (see results.csv)", file=sys.stderr)
        return 1
    followup = followup_sweep(preset, chosen)
    if not run_phase(followup, out, "followup", args, executor) or args.dry_run:
        return 0
    report = study_report.write(out, preset, grid, followup, command=_command_line(args),
                                train_seconds=time.perf_counter() - start,
                                machine=_machine())
    print(f"report: {report}")
    return 0


def _executor(args, preset):
    if args.executor == "ray":
        return RayCluster(args.address, args.cpus_per_run, args.gpus_per_run)
    processes = args.processes or min(preset.processes, os.cpu_count() or 1)
    return LocalProcesses(processes) if processes > 1 else InProcess()


def _command_line(args) -> str:
    return "python -m lm.study " + " ".join(shlex.quote(a) for a in args.argv)


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}"
