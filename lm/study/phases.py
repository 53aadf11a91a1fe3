"""The study's phases (see lm/study/cli.py for the whole job): tuning (lm/study/tuning.py),
then the `final` sweep built from the tuned settings, then the analysis and report.

The final sweep, DIR/final, holds
- the ladder: every size that was not tuned, each optimizer at its nearest tuning size's
  settings with the lr re-tuned over a centre lr and its two grid neighbours: with 2 or more
  tuning sizes, the lr that lr(N) = a N^b through their tuned lrs predicts (snapped to the
  grid; the launch scripts say so), else the nearest tuning size's lr;
- seeds: every tuned point again with `seeds` more seeds (the noise bands);
- budgets: AdamW at `data_multipliers` x the steps at `budget_sizes`, from its nearest tuned
  settings with the lr re-tuned the same way (the same centre at a size not tuned; its
  loss-vs-data curve, for the effective-data speedups of Wen et al. 2025);
- anneal: the other optimizers' tuned points trained (and annealed) on `anneal_fractions` of
  the steps (steps to AdamW's loss, the SOAP paper's method);
- code: AdamW on the code corpus at every size, at its tuned settings (loss-to-loss pairs).
"""
import json
import math
import os
import platform
import shlex
import sys
import threading
import time

import optim
from core import user_modules
from core.run_format import damaged
from lm.errors import SweepError, as_sweep_error
from lm.study import cbs, hyperparameter_laws, overrides, presets, runs, tuning
from lm.study import report as study_report
from lm.study.tune import Result, point_id
from lm.sweep import slurm
from lm.sweep.executors import InProcess, LocalProcesses, RayCluster
from lm.sweep.runner import (
    OPTIMIZER_STEP_COST,
    duration,
    estimate_seconds,
    owned,
    stop_on_signals,
)
from lm.sweep.spec import expand
from lm.train import workdir as run_files
from lm.train.config_flag import import_into

MANIFEST = "study.json"
BASELINE = "adamw"


def load_preset(args):
    """The preset with the command line's changes (lm/study/overrides.py), after the user's
    modules (--import) are imported; errors name the fix."""
    user_modules.import_modules(args.imports)
    try:
        preset = presets.get_preset(args.preset)
    except ValueError as err:
        raise SweepError(str(err)) from err
    import_into(preset.run, args.imports)
    overrides.apply(preset, args)
    overrides.check_sources(preset, args.dry_run)
    if BASELINE not in preset.optimizers:
        raise SweepError(f"the study measures every optimizer against {BASELINE}; keep it in "
                         f"--optimizers (got {', '.join(preset.optimizers)})")
    registered = optim.registered_optimizers()
    for name in preset.optimizers:
        if name not in registered:
            raise SweepError(f"--optimizers: {name!r} is not a registered optimizer; use some "
                             f"of {', '.join(registered)}, or --import the module of your own "
                             "that registers it (docs/optimizers.md)")
        if preset.kind == "compare" and name not in preset.search:
            raise SweepError(f"no search space for {name!r}: give its hyperparameters grids in "
                             "its definition (core.fields.Field(grid=...), Section(search=...)) "
                             "or in a --search=FILE (lm/study/overrides.py)")
    if preset.kind == "compare":
        extra = set(preset.seed_sizes) - set(preset.tune_sizes)
        if extra:
            raise SweepError(f"preset {args.preset}: seed_sizes {sorted(extra)} are not tuning "
                             "sizes; the seeds repeat tuned points")
        if len(preset.sizes) < 4:
            print(f"warning: {len(preset.sizes)} sizes; the compute law holds out the largest "
                  "runs and needs at least 4 sizes to fit the rest", file=sys.stderr)
    return preset


def claim_out(out: str, preset_name: str, preset) -> None:
    """`out` is new, empty, or a study of the same preset; records the study in DIR/study.json."""
    path = os.path.join(out, MANIFEST)
    if os.path.exists(path):
        owner = run_files.read_json(path)
        if not isinstance(owner.get("preset"), str):
            raise damaged(path, "it lacks the preset's name")
        if owner["preset"] != preset_name:
            raise SweepError(f"{out} holds a study of preset {owner['preset']!r}, not "
                             f"{preset_name!r}; give this one its own --runs_dir")
    elif os.path.isdir(out) and set(os.listdir(out)) - {run_files.LOCK}:
        raise SweepError(f"{out} is not empty and holds no {MANIFEST}: it is not a study "
                         "directory; use a new or empty --runs_dir")
    os.makedirs(out, exist_ok=True)
    run_files.write_text(path, json.dumps({"preset": preset_name, "settings": preset.to_dict()},
                                          indent=2, default=str))


def nearest_tune_size(preset, size: str) -> str:
    """The tuning size closest to `size` in log N (its settings are `size`'s start)."""
    n = {s: runs.non_embedding_params(preset, s) for s in {size, *preset.tune_sizes}}
    return min(preset.tune_sizes, key=lambda s: abs(math.log(n[s] / n[size])))


def lr_neighbourhood(preset, optimizer: str, lr: float) -> list[float]:
    """The optimizer's grid lr nearest `lr` (in log) and its neighbours on the grid (the
    per-size and per-budget lr re-tuning of Wen et al. 2025)."""
    grid = list(preset.search[optimizer].grids.lr)
    i = grid.index(hyperparameter_laws.nearest_grid_value(grid, lr))
    return grid[max(0, i - 1):i + 2]


def lr_centre(preset, tuned: dict, optimizer: str, size: str) -> tuple[float, str]:
    """(lr, law): the grid lr the final phase centres `size`'s lr on, and the text of the law
    that predicted it ("" when none did). At a size not tuned, with 2 or more tuning sizes,
    the grid lr nearest the one lr(N) through their lr optima predicts
    (lm/study/hyperparameter_laws.py); else the nearest tuning size's tuned lr (the tiny
    preset: one tuning size)."""
    nearest = tuned[nearest_tune_size(preset, size)].results[optimizer].best["lr"]
    proposal = None if size in preset.tune_sizes else hyperparameter_laws.proposed_lr(
        preset, tuned, optimizer, size)
    if proposal is None:
        return nearest, ""
    lr, law = proposal
    return hyperparameter_laws.nearest_grid_value(preset.search[optimizer].grids.lr, lr), law


def final_points(preset, tuned: dict) -> dict[str, list[dict]]:
    """The final sweep's points by role (module docstring), from the tuned settings: the
    nearest tuning size's, with the lr centred by `lr_centre` (the code runs at the centre: the
    twins of a ladder run)."""
    best = {(size, o): tuned[size].results[o].best for size in tuned for o in preset.optimizers}
    roles = {"ladder": [], "seeds": [], "budgets": [], "anneal": [], "code": []}
    for size in preset.sizes:
        for optimizer in preset.optimizers:
            settings = best[(nearest_tune_size(preset, size), optimizer)]
            if size not in preset.tune_sizes:
                centre, _ = lr_centre(preset, tuned, optimizer, size)
                roles["ladder"] += [runs.point(preset, size, optimizer, {**settings, "lr": lr})
                                    for lr in lr_neighbourhood(preset, optimizer, centre)]
    for size in preset.seed_sizes:
        roles["seeds"] += [runs.point(preset, size, o, best[(size, o)], seed=s)
                           for o in preset.optimizers for s in range(1, preset.seeds + 1)]
    for size in preset.budget_sizes:
        settings = best[(nearest_tune_size(preset, size), BASELINE)]
        centre, _ = lr_centre(preset, tuned, BASELINE, size)
        roles["budgets"] += [runs.point(preset, size, BASELINE, {**settings, "lr": lr},
                                        multiplier=m)
                             for m in preset.data_multipliers
                             for lr in lr_neighbourhood(preset, BASELINE, centre)]
    for size in preset.tune_sizes:
        roles["anneal"] += [runs.point(preset, size, o, best[(size, o)], multiplier=f)
                            for o in preset.optimizers if o != BASELINE
                            for f in preset.anneal_fractions]
    for size in preset.code_sizes:
        settings = best[(nearest_tune_size(preset, size), BASELINE)]
        centre, _ = lr_centre(preset, tuned, BASELINE, size)
        roles["code"].append(runs.point(preset, size, BASELINE, {**settings, "lr": centre},
                                        dataset=preset.code))
    return roles


def launch_notes(preset, tuned: dict) -> dict:
    """point_id -> the launch script's comment on each final-phase run: its role and where its
    settings come from; a predicted lr says so, with its law and the tuning sizes' optima."""
    centres = {(o, s): lr_centre(preset, tuned, o, s)
               for o in preset.optimizers for s in preset.sizes}
    notes = {}
    for role, points in final_points(preset, tuned).items():
        for p in points:
            optimizer, size = p["optimizer"], p["size"]
            centre, law = centres[(optimizer, size)]
            source = (f"lr predicted by {law}; the grid lr nearest it {centre:.3g}" if law
                      else f"the tuned settings of {nearest_tune_size(preset, size)}")
            if role in ("ladder", "budgets"):
                tried = lr_neighbourhood(preset, optimizer, centre)
                source += f"; the lr re-tuned over {', '.join(f'{lr:.3g}' for lr in tried)}"
            steps = f", {p['steps']} steps" if role in ("budgets", "anneal") else ""
            notes[point_id(p)] = f"{role}: {optimizer} at {size}{steps}, {source}"
    return notes


def final_sweep(preset, tuned: dict, catalog: runs.Catalog):
    """The final phase's sweep: its points less those the tuning phase already trained, the
    costliest first (the cheap ones then fill the processes' idle tail)."""
    seen, points = set(), []
    for found in (p for role in final_points(preset, tuned).values() for p in role):
        if found not in catalog and point_id(found) not in seen:
            seen.add(point_id(found))
            points.append(found)
    params = {s: runs.non_embedding_params(preset, s) for s in {p["size"] for p in points}}
    points.sort(key=lambda p: -p["steps"] * params[p["size"]]
                * OPTIMIZER_STEP_COST.get(p["optimizer"], 1.0))
    return runs.sweep(preset, points)


def tune_catalog(preset, out: str) -> runs.Catalog:
    catalog = runs.Catalog()
    for size in preset.tune_sizes:
        root = os.path.join(out, "tune", size)
        planned = tuning.planned_points(root)
        if planned:
            catalog.add(root, runs.sweep(preset, planned))
    return catalog


def run_study(args) -> int:
    """Runs (or, with --dry_run, lists) the study into --runs_dir. A study holds its directory
    for the whole invocation (a second one on it is refused, naming the holder) and stops as a
    whole on SIGINT / SIGTERM: the running runs save a checkpoint, no new run starts, and the
    same command resumes it (args.stop, the event the phases' sweeps share)."""
    start = time.perf_counter()
    out = os.path.abspath(args.runs_dir)
    with as_sweep_error():
        run_files.check_directory(out, "--runs_dir")
    args.runs_dir = out
    if args.dry_run:  # reads only: a study running in `out` does not stop it
        return _study(out, args, start)
    args.stop = threading.Event()
    with owned(out, "study"), stop_on_signals(args.stop, "study"):
        return _study(out, args, start)


def _study(out: str, args, start: float) -> int:
    """run_study's phases, once `out` is checked and (unless a dry run) held."""
    preset = load_preset(args)
    if preset.kind == "cbs":
        return cbs.run(preset, out, args, _executor(args, preset), claim_out,
                       _report_context(args, start))
    placeholder = {size: tuning.Tuned(size, {o: _start(preset, o) for o in preset.optimizers},
                                      {}, {}, math.nan, 0.0) for size in preset.tune_sizes}
    every = [p for role in final_points(preset, placeholder).values() for p in role]
    every += [p for ps in tuning.noise_points(preset, preset.tune_sizes[0]).values()
              for p in ps]
    expand(runs.sweep(preset, list({point_id(p): p for p in every}.values())))  # checks first
    if not args.dry_run:
        claim_out(out, args.preset, preset)
    executor = _executor(args, preset)
    tuned = tuning.run_tuning(preset, out, args, executor)
    if args.dry_run:
        print("final (placeholders: the start points stand for the tuned settings):")
        catalog = tune_catalog(preset, out)
        final = final_sweep(preset, tuned or placeholder, catalog)
        runs.run_phase(final, out, "final", args, executor)
        _print_total(preset, final)
        return 0
    if tuned is None:
        return 0
    catalog = tune_catalog(preset, out)
    final = final_sweep(preset, tuned, catalog)
    if not runs.run_phase(final, out, "final", args, executor,
                          notes=launch_notes(preset, tuned)):
        return 0
    catalog.add(os.path.join(out, "final"), final)
    report = study_report.write(out, preset, tuned, final_points(preset, tuned), catalog,
                                time_steps=args.launch == "here", **_report_context(args, start))
    print(f"report: {report}")
    return 0


def _start(preset, optimizer: str):
    """A stand-in tune.Result at the start point (dry runs list the final sweep with it)."""
    return Result(dict(preset.search[optimizer].start), math.nan, [], {}, converged=False)


def _print_total(preset, final) -> None:
    configs = [run.config for run in expand(final)]
    seconds = sum(estimate_seconds(c) for c in configs)
    print(f"final: {len(configs)} runs, ~{duration(seconds)} in one process "
          f"(~{duration(seconds / max(1, preset.processes))} with {preset.processes} at once)")


def _executor(args, preset):
    if args.executor == "ray":
        return RayCluster(args.address, args.cpus_per_run, args.gpus_per_run)
    if args.executor == "slurm":
        return slurm.from_args(args)
    processes = args.processes or min(preset.processes, os.cpu_count() or 1)
    return LocalProcesses(processes) if processes > 1 else InProcess()


def _report_context(args, start: float) -> dict:
    return dict(command="python -m lm.study " + " ".join(shlex.quote(a) for a in args.argv),
                started=start, machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                f"{platform.system()}")

