"""The study's fits, through scaling.laws: a compute law per optimizer, AdamW's L(N, D) (for the
effective-data speedups, scaling/speedup.py), and loss-to-loss train-to-train and
train-to-test. Each writes fit.json, report.md and its PNG into DIR/fits/<name>, and the report
lists the equivalent `python -m scaling.fit` command (tests/test_study.py reruns one).
"""
import csv
import dataclasses
import os
import shlex
from typing import Callable

from lm.sweep.spec import expand
from lm.sweep.state import progress, read_record
from scaling import laws
from scaling.runs import curve_points, load_runs

BASELINE = "adamw"
# L-BFGS runs from the best 100 of the 4,500 Approach-3 grid starts (all of them take minutes,
# and on the Chinchilla data the best 100 reach the same optimum: tests/test_scaling_chinchilla)
GRID_STARTS = 100


def finished_runs(out, preset, grid, followup) -> dict:
    """Workdirs of finished runs: best[(optimizer, size)] (the selected lr), budgets[size]
    (AdamW's other prose budgets), code[size]; status counts and summed wall time."""
    prose, later = os.path.join(out, "prose"), os.path.join(out, "followup")
    found = {"best": {}, "budgets": {}, "code": {}, "wall_s": 0.0, "counts": {}}
    with open(os.path.join(prose, "best_lr.csv")) as f:
        chosen = {row["run"] for row in csv.DictReader(f) if row["run"]}
    for root, sweep in ((prose, grid), (later, followup)):
        for run in expand(sweep):
            workdir = os.path.join(root, run.name)
            state = progress(workdir, run.config.train.steps)
            found["counts"][state.status] = found["counts"].get(state.status, 0) + 1
            found["wall_s"] += read_record(workdir).get("wall_s", 0.0)
            if not state.finished:
                continue
            size = run.overrides["size"]
            if root == prose and run.name in chosen:
                found["best"][(run.overrides["optimizer"], size)] = workdir
            elif root == later and run.overrides["dataset"] == preset.code:
                found["code"][size] = workdir
            elif root == later:
                found["budgets"].setdefault(size, []).append(workdir)
    return found


@dataclasses.dataclass(frozen=True)
class FitSpec:
    """One fit: its runs, the scaling.laws call, and the same fit's scaling.fit flags."""
    name: str
    dirs: list
    curves: bool  # every validation point of the learning curves, not only final losses
    fit: Callable[[object, laws.FitOptions], laws.Fitted]
    flags: list
    holdout_factor: float = 2.0

    def command(self, out: str, bootstrap: int) -> str:
        """The equivalent command line, run from `out`."""
        dirs = [os.path.relpath(d, out) for d in self.dirs]
        flags = [*self.flags, *(["--curves"] if self.curves else []),
                 *([f"--holdout-factor={self.holdout_factor:g}"]
                   if self.holdout_factor != 2.0 else []),
                 f"--bootstrap={bootstrap}", f"--out={os.path.join('fits', self.name)}"]
        return "python -m scaling.fit " + shlex.join(["--runs", *dirs, *flags])


def fit_specs(runs, preset, sizes) -> list[FitSpec]:
    adamw = [runs["best"][(BASELINE, s)] for s in sizes]
    specs = [FitSpec(f"compute_{optimizer}",
                     [runs["best"][(optimizer, s)] for s in preset.sizes
                      if (optimizer, s) in runs["best"]], True,
                     lambda table, options: laws.compute(table, options=options),
                     ["--law=compute"]) for optimizer in preset.optimizers]
    budgets = [d for s in sizes for d in runs["budgets"].get(s, [])]
    specs.append(FitSpec(
        "adamw_data_law", adamw + budgets, False,
        lambda table, options: laws.chinchilla(table, options=options, grid_starts=GRID_STARTS),
        ["--law=chinchilla", f"--grid-starts={GRID_STARTS}"], holdout_factor=0))
    code = [runs["code"][s] for s in sizes if s in runs["code"]]
    specs.append(FitSpec(
        "loss_to_loss_train_to_train", adamw + code, True,
        lambda table, options: laws.loss_to_loss(table, preset.prose, preset.code,
                                                 kind="train_to_train", options=options),
        ["--law=loss_to_loss", "--kind=train_to_train", f"--x-data={preset.prose}",
         f"--y-data={preset.code}"]))
    code_loss = f"eval/{preset.code}/loss"
    specs.append(FitSpec(
        "loss_to_loss_train_to_test", adamw, True,
        lambda table, options: laws.loss_to_loss(table, preset.prose, kind="train_to_test",
                                                 y_loss=code_loss, options=options),
        ["--law=loss_to_loss", "--kind=train_to_test", f"--x-data={preset.prose}",
         f"--y-loss={code_loss}"]))
    return specs


def run_fits(out: str, specs: list[FitSpec], bootstrap: int):
    """(name -> Fitted, name -> command, problems): each spec fitted and written."""
    fitted, commands, problems = {}, {}, []
    for spec in specs:
        commands[spec.name] = spec.command(out, bootstrap)
        fit_dir = os.path.join(out, "fits", spec.name)
        options = laws.FitOptions(bootstrap=bootstrap, holdout_factor=spec.holdout_factor,
                                  plot_dir=fit_dir)
        try:
            table = load_runs(spec.dirs)
            table = curve_points(table) if spec.curves else table
            fitted[spec.name] = spec.fit(table, options)
        except ValueError as err:
            problems.append(f"fit {spec.name} failed: {err}")
            continue
        laws.write(fitted[spec.name], fit_dir, {
            "source": " ".join(os.path.relpath(d, out) for d in spec.dirs),
            "law": spec.flags[0].split("=")[1], "rows": len(table),
            "bootstrap resamples": bootstrap, "interval level": options.level,
            "seed": options.seed})
    return fitted, commands, problems
