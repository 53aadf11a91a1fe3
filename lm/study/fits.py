"""The study's scaling-law fits, through scaling.laws: a compute law per optimizer and
loss-to-loss train-to-train and train-to-test, each over learning curves resampled and held out
run by run. Each writes fit.json, report.md and its PNG into DIR/fits/<name>, and the report
lists the equivalent `python -m scaling.fit` command (tests/study/test_study.py reruns one).
"""
import concurrent.futures
import dataclasses
import functools
import multiprocessing
import os
import shlex
from typing import Callable

from scaling import laws
from scaling.runs import curve_points, load_runs


@dataclasses.dataclass(frozen=True)
class FitSpec:
    """One fit: its runs, the scaling.laws call, and the same fit's scaling.fit flags."""
    name: str
    dirs: list
    curves: bool  # every validation point of the learning curves, not only final losses
    fit: Callable  # fit(table, options=laws.FitOptions) -> laws.Fitted; picklable (a partial
    flags: list    # of a scaling.laws function), as the fits run in worker processes

    def command(self, out: str, bootstrap: int) -> str:
        """The equivalent command line, run from `out`."""
        dirs = [os.path.relpath(d, out) for d in self.dirs]
        flags = [*self.flags, *(["--curves"] if self.curves else []),
                 f"--bootstrap={bootstrap}", f"--report_dir={os.path.join('fits', self.name)}"]
        return "python -m scaling.fit " + shlex.join(["--runs", *dirs, *flags])


def fit_specs(preset, best: dict, pairs: dict) -> list[FitSpec]:
    """A compute law per optimizer over `best` (optimizer -> workdirs of its best run at each
    size), and loss-to-loss over `pairs` ({"prose": [...], "code": [...]}: AdamW's workdirs at
    equal settings per size on each corpus)."""
    specs = [FitSpec(f"compute_{optimizer}", dirs, True, laws.compute, ["--law=compute"])
             for optimizer, dirs in best.items()]
    specs.append(FitSpec(
        "loss_to_loss_train_to_train", pairs["prose"] + pairs["code"], True,
        functools.partial(laws.loss_to_loss, x_data=preset.prose, y_data=preset.code,
                          kind="train_to_train"),
        ["--law=loss_to_loss", "--kind=train_to_train", f"--x_data={preset.prose}",
         f"--y_data={preset.code}"]))
    code_loss = f"eval/{preset.code}/loss"
    specs.append(FitSpec(
        "loss_to_loss_train_to_test", pairs["prose"], True,
        functools.partial(laws.loss_to_loss, x_data=preset.prose, kind="train_to_test",
                          y_loss=code_loss),
        ["--law=loss_to_loss", "--kind=train_to_test", f"--x_data={preset.prose}",
         f"--y_loss={code_loss}"]))
    return specs


def run_fits(out: str, specs: list[FitSpec], bootstrap: int, processes: int = 1):
    """(name -> fit record, name -> command, problems): each spec fitted and written into
    DIR/fits/<name>, `processes` at once (each fit is single-threaded)."""
    commands = {spec.name: spec.command(out, bootstrap) for spec in specs}
    jobs = [(out, spec, bootstrap) for spec in specs]
    if processes > 1:
        with concurrent.futures.ProcessPoolExecutor(
                processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            outcomes = list(pool.map(_fit_one, *zip(*jobs)))
    else:
        outcomes = [_fit_one(*job) for job in jobs]
    records = {spec.name: record for spec, (record, _) in zip(specs, outcomes) if record}
    return records, commands, [problem for _, problem in outcomes if problem]


def _fit_one(out: str, spec: FitSpec, bootstrap: int) -> tuple[dict | None, str]:
    """(fit.json's record or None, the problem if the fit failed)."""
    fit_dir = os.path.join(out, "fits", spec.name)
    options = laws.FitOptions(bootstrap=bootstrap, plot_dir=fit_dir)
    try:
        table = load_runs(spec.dirs)
        table = curve_points(table) if spec.curves else table
        fitted = spec.fit(table, options=options)
    except ValueError as err:
        return None, f"fit {spec.name} failed: {err}"
    laws.write(fitted, fit_dir, {
        "source": " ".join(os.path.relpath(d, out) for d in spec.dirs),
        "law": spec.flags[0].split("=")[1], "rows": len(table),
        "bootstrap resamples": bootstrap, "interval level": options.level,
        "seed": options.seed})
    return laws.record(fitted), ""
