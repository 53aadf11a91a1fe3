"""Each scaling law as a function of a table of runs, returning its fit with report material.

    from scaling import laws
    from scaling.runs import load_runs
    fitted = laws.chinchilla(load_runs(["runs/ladder"]), options=laws.FitOptions(bootstrap=1000))
    fitted.fit.params["alpha"]                # Estimate(value, low, high)
    laws.write(fitted, "reports/chinchilla")  # fit.json, report.md (the plots are in plot_dir)

A table is a `scaling.table.Table`: run directories through `scaling.runs.load_runs` (one row
per run, or per validation point with `curve_points`), or a CSV through `read_csv`. `Columns`
names its model size, tokens, FLOPs and loss columns; D = C / 6N or C = 6ND when one is
absent. `FitOptions` sets the bootstrap and the held-out runs: by default those within 2x of
the largest compute (for cbs: of the largest model size) are left out of the fit and predicted.
`python -m scaling.fit` (scaling/fit.py) is the command line over these functions.

Every law goes through scaling/guardrails.py: it refuses (ValueError) fewer than 3 runs left to
fit after the hold-out, and `Fitted.usage` (the runs and points fitted and held out) and
`Fitted.warnings` ("degenerate fit: ...", a validation that predicted nothing) are in the
report and in `record`.
"""
import collections
import dataclasses
import os
import warnings
from typing import Any, NamedTuple

import numpy as np

from scaling import chinchilla as chinchilla_law
from scaling import compute_law, critical_batch, guardrails, plots, report
from scaling import loss_to_loss as loss_to_loss_law
from scaling.inputs import bootstrap_settings
from scaling.table import Table
from scaling.validation import largest_runs, summarize

KINDS = ("train_to_train", "train_to_test", "test_to_test")


@dataclasses.dataclass(frozen=True)
class Columns:
    """The table's columns: model size N, training tokens D, training FLOPs C, the loss."""
    n: str = "params_non_embedding"
    d: str = "tokens"
    c: str = "flops"
    loss: str = "val_loss"


@dataclasses.dataclass(frozen=True)
class FitOptions:
    bootstrap: int = 1000          # bootstrap resamples (of runs)
    level: float = 0.95            # interval level
    seed: int = 0
    holdout_factor: float = 2.0    # hold out runs within this factor of the largest (0: none)
    heldout: Table | None = None   # held-out runs to predict instead (same columns)
    plot_dir: str | None = None    # where the law's PNG is written (None: no plot)


class Fitted(NamedTuple):
    """One law's fit: the report's title, tables, held-out predictions, plot paths and notes,
    the fit object itself (its point estimate and bootstrap draws, for predictions), what it
    used (guardrails.Usage, one per fitted data set) and its guardrails' warnings."""
    title: str
    tables: dict
    heldout: Any
    plots: list
    fit: Any
    notes: list
    usage: list
    warnings: list


def sizes(table: Table, columns: Columns, notes: list | None = None) -> dict[str, np.ndarray]:
    """N, D and C columns, deriving D = C / 6N or C = 6ND when one is absent."""
    n = table.numeric(columns.n)
    if columns.d in table:
        d = table.numeric(columns.d)
        c = table.numeric(columns.c) if columns.c in table else 6 * n * d
    else:
        c = table.numeric(columns.c)
        d = c / (6 * n)
        if notes is not None:
            notes.append(f"No {columns.d!r} column: D = C / (6 N).")
    return {"n": n, "d": d, "c": c}


def run_names(table: Table, fallback: list[str]) -> np.ndarray:
    """Each row's run, as the report names it: its `run` (learning-curve points), else its
    `name` (run directories, tables with names), else `fallback` (e.g. "N=1e+06 D=2e+07"),
    a repeat numbered ("#2"), since each row of such a table is a run of its own."""
    for column in ("run", "name"):
        if column in table:
            return np.asarray(table[column]).astype(str)
    seen = collections.Counter()
    names = []
    for name in fallback:
        seen[name] += 1
        names.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return np.asarray(names, dtype=str)


def _size_names(table: Table, cols: dict) -> np.ndarray:
    return run_names(table, [f"N={n:.3g} D={d:.3g}" for n, d in zip(cols["n"], cols["d"])])


def _usage(fit: str, names: np.ndarray, mask: np.ndarray, size: np.ndarray,
           options: FitOptions, ranked_by: str) -> guardrails.Usage:
    """What a fit uses, refused (ValueError) when fewer than guardrails.MIN_RUNS runs are left
    to fit; `size` (compute or model size, `ranked_by`) is what the hold-out ranks runs by."""
    factor = options.holdout_factor
    if options.heldout is not None:
        how = "the held-out table"
    elif factor:
        how = f"holdout_factor={factor:g} (runs within {factor:g}x of the largest {ranked_by})"
    else:
        how = "holdout_factor=0"
    by_factor = options.heldout is None and bool(factor)
    used = guardrails.usage_of(fit, names, mask, size, how, by_factor)
    guardrails.require_runs(used)
    return used


def _validated(options: FitOptions) -> bool:
    """Whether held-out validation was asked for."""
    return options.heldout is not None or bool(options.holdout_factor)


def run_labels(table: Table) -> np.ndarray | None:
    """The run of each row of a learning-curve table (scaling.runs.curve_points), else None
    (one row per run): fits resample and hold out whole runs by it."""
    return np.asarray(table["run"]).astype(str) if "run" in table else None


def _combined(table: Table, columns: Columns, options: FitOptions, notes: list, key: str):
    """Columns of the fitting and held-out rows stacked (with "name", each row's run), and the
    held-out mask: rows of options.heldout, or those within options.holdout_factor of the
    largest `key` (c or n), whole runs for learning curves."""
    cols = {**sizes(table, columns, notes), "loss": table.numeric(columns.loss)}
    cols["name"] = _size_names(table, cols)
    if options.heldout is not None:
        held = options.heldout
        extra = {**sizes(held, columns), "loss": held.numeric(columns.loss)}
        extra["name"] = _size_names(held, extra)
        mask = np.r_[np.zeros(len(table), bool), np.ones(len(held), bool)]
        return {k: np.r_[cols[k], extra[k]] for k in cols}, mask
    if options.holdout_factor == 0:
        return cols, np.zeros(len(table), bool)
    return cols, largest_runs(cols[key], options.holdout_factor, run_labels(table))


def _plot(options: FitOptions, draw, *args, name: str) -> list[str]:
    if options.plot_dir is None:
        return []
    os.makedirs(options.plot_dir, exist_ok=True)
    return [draw(*args, os.path.join(options.plot_dir, name))]


def compute(table: Table, columns: Columns = Columns(),
            options: FitOptions = FitOptions()) -> Fitted:
    """L(C) = E + A C^-alpha on the compute frontier (scaling/compute_law.py)."""
    bootstrap_settings(options.bootstrap, options.level)
    notes = []
    cols, mask = _combined(table, columns, options, notes, "c")
    used = [_usage("compute law", cols["name"], mask, cols["c"], options, "compute")]
    runs = run_labels(table)
    if runs is not None and options.heldout is not None:
        runs = np.r_[runs, np.full(len(options.heldout), "held out")]
    fit = compute_law.fit_compute_law(cols["c"], cols["loss"], heldout=mask,
                                      n_bootstrap=options.bootstrap, seed=options.seed,
                                      level=options.level, groups=runs)
    png = _plot(options, plots.plot_compute_law, fit, cols["c"][~mask], cols["loss"][~mask],
                name="compute_law.png")
    frontier_c, frontier_runs = (cols[k][~mask][fit.frontier] for k in ("c", "name"))
    on_frontier = list(dict.fromkeys(frontier_runs[np.argsort(frontier_c, kind="stable")]))
    notes.append(f"{fit.frontier.sum()} of {(~mask).sum()} fitted points lie on the compute "
                 f"frontier, from {guardrails.named_runs(on_frontier)}.")
    warnings_ = guardrails.check(
        used, [(fit.params, "", compute_law.LOWER_BOUNDS)], _validated(options),
        len(fit.heldout), "the compute law predicts the held-out points on the compute "
        "frontier of all runs")
    return Fitted("Compute law L(C) = E + A C^-alpha", {"parameters": fit.params}, fit.heldout,
                  png, fit, notes, used, warnings_)


def chinchilla(table: Table, columns: Columns = Columns(), options: FitOptions = FitOptions(),
               approach: int = 3, grid_starts: int | None = None,
               budget_col: str | None = None) -> Fitted:
    """L(N, D) = E + A/N^alpha + B/D^beta (Approach 3, L-BFGS from the best `grid_starts` of
    the grid starts) or Approach 2's IsoFLOP parabolas (FLOP budgets from `budget_col`, else
    grouped C) (scaling/chinchilla.py)."""
    bootstrap_settings(options.bootstrap, options.level)
    notes = []
    cols, mask = _combined(table, columns, options, notes, "c")
    used = [_usage(f"Chinchilla approach {approach}", cols["name"], mask, cols["c"], options,
                   "compute")]
    resampling = dict(n_bootstrap=options.bootstrap, seed=options.seed, level=options.level)
    if approach == 2:
        held = options.heldout
        budgets = None if budget_col is None else np.r_[
            table.numeric(budget_col), held.numeric(budget_col) if held is not None else []]
        fit = chinchilla_law.fit_approach2(cols["n"], cols["d"], cols["c"], cols["loss"],
                                           budgets=budgets, heldout=mask, **resampling)
        labels = chinchilla_law.group_budgets(cols["c"]) if budgets is None else budgets
        png = _plot(options, plots.plot_isoflop, fit, cols["n"][~mask], cols["loss"][~mask],
                    labels[~mask], name="chinchilla_approach2.png")
        warnings_ = guardrails.check(used, [(fit.params, "", None)], _validated(options),
                                     len(fit.heldout), "approach 2 predicts N_opt and D_opt "
                                     "at the held-out FLOP budgets")
        return Fitted("Chinchilla Approach 2 (IsoFLOP parabolas)", {"allocation": fit.params},
                      fit.heldout, png, fit, notes, used, warnings_)
    fit = chinchilla_law.fit_approach3(cols["n"], cols["d"], cols["loss"], heldout=mask,
                                       keep_best=grid_starts, **resampling)
    png = _plot(options, plots.plot_chinchilla, fit, cols["n"][~mask], cols["d"][~mask],
                cols["loss"][~mask], name="chinchilla.png")
    budgets = cols["c"][~mask].max() * np.array([1, 10, 100])
    allocation = fit.optimal_allocation(budgets)
    notes.append(f"L-BFGS ran from {fit.n_starts} grid starts; {fit.n_agree} reached the "
                 "optimum. Bootstrap resamples start from the full-data optimum and the best grid "
                 "starts.")
    parameters = {k: v for k, v in fit.params.items() if k in chinchilla_law.PARAMS}
    warnings_ = guardrails.check(used, [(parameters, "", chinchilla_law.LOWER_BOUNDS)],
                                 _validated(options), len(fit.heldout),
                                 "approach 3 predicts every held-out run")
    return Fitted(
        "Chinchilla Approach 3: L(N, D) = E + A/N^alpha + B/D^beta",
        {"parameters": parameters,
         "compute-optimal exponents (N* = G (C/6)^a, D* = (C/6)^b / G)":
             {k: v for k, v in fit.params.items() if k in chinchilla_law.ALLOCATION},
         "compute-optimal allocation": {f"{k} at C={c:.3g}": v[i] for k, v in allocation.items()
                                        for i, c in enumerate(budgets)}},
        fit.heldout, png, fit, notes, used, warnings_)


class _Side(NamedTuple):
    """One side of a loss-to-loss fit: its runs' N, D, C and loss, each row's run (for
    learning-curve points; None for one row per run) and each row's run name (run_names)."""
    n: np.ndarray
    d: np.ndarray
    c: np.ndarray
    loss: np.ndarray
    run: np.ndarray | None
    name: np.ndarray

    def rows(self, selection) -> "_Side":
        return _Side(*(None if a is None else a[selection] for a in self))


def _side(table: Table, columns: Columns, dataset_col: str, data: str, loss_col: str,
          notes: list) -> _Side:
    rows = table.rows(table[dataset_col].astype(str) == data)
    if len(rows) == 0:
        raise ValueError(f"no rows with {dataset_col}={data!r}; values: "
                         f"{', '.join(np.unique(table[dataset_col].astype(str)))}")
    cols = sizes(rows, columns, notes)
    return _Side(cols["n"], cols["d"], cols["c"], rows.numeric(loss_col), run_labels(rows),
                 _size_names(rows, cols))


def _side_usage(fit: str, side: _Side, held: np.ndarray, options: FitOptions,
                extra: _Side | None) -> guardrails.Usage:
    """`_usage` of one side: its rows, `held` among them, and the held-out table's rows of
    that side (`extra`), if any."""
    if extra is None:
        return _usage(fit, side.name, held, side.c, options, "compute")
    return _usage(fit, np.r_[side.name, extra.name], np.r_[held, np.ones(len(extra.n), bool)],
                  np.r_[side.c, extra.c], options, "compute")


def loss_to_loss(table: Table, x_data: str | None, y_data: str | None = None,
                 kind: str = "train_to_train", x_loss: str = "val_loss",
                 y_loss: str = "val_loss", dataset_col: str = "data",
                 columns: Columns = Columns(), options: FitOptions = FitOptions()) -> Fitted:
    """L_y = K (L_x - E_x)^kappa + E_y between the runs trained on `x_data` and `y_data`
    (train_to_train, test_to_test: paired by N and D) or two losses of the same runs
    (train_to_test), each E from that side's own L(N, D) (scaling/loss_to_loss.py)."""
    bootstrap_settings(options.bootstrap, options.level)
    if x_data is None:
        raise ValueError("loss_to_loss needs x_data (the x runs' training set, a value of "
                         f"dataset_col={dataset_col})")
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
    same_runs = kind == "train_to_test"
    y_data = x_data if same_runs and y_data is None else y_data
    if y_data is None:
        raise ValueError(f"kind={kind} needs y_data (the y runs' training set)")
    if same_runs and y_data != x_data:
        raise ValueError("train_to_test compares two losses of the same runs: y_data must "
                         "equal x_data (set y_loss to the other distribution's loss)")
    notes = []
    x = _side(table, columns, dataset_col, x_data, x_loss, notes)
    y = _side(table, columns, dataset_col, y_data, y_loss, notes)
    x_held, y_held, held = _loss_to_loss_holdout(x, y, (x_data, y_data), (x_loss, y_loss),
                                                 dataset_col, columns, options)
    labels = (f"{x_loss} ({x_data})", f"{y_loss} ({y_data})")
    extras = held if options.heldout is not None else (None, None)
    used = [_side_usage(f"offset law of {label}", side, mask, options, extra)
            for label, side, mask, extra in zip(labels, (x, y), (x_held, y_held), extras)]

    def pair(a: _Side, b: _Side):
        if same_runs:
            return np.arange(len(a.n)), np.arange(len(a.n))
        return loss_to_loss_law.pair_by_size(a.n, a.d, b.n, b.d)

    offsets = [loss_to_loss_law.fit_offset_law(s.n, s.d, s.loss, n_bootstrap=options.bootstrap,
                                               seed=options.seed, level=options.level,
                                               groups=s.run)
               for s in (x.rows(~x_held), y.rows(~y_held))]
    fit_x = x.rows(~x_held)
    ix, iy = pair(fit_x, y.rows(~y_held))
    if len(ix) == 0:
        raise ValueError(f"no {x_data} and {y_data} runs share (N, D); train-to-train and "
                         "test-to-test pair models by size")
    heldout = {}
    if held is not None:
        hx, hy = held
        hix, hiy = pair(hx, hy)
        heldout = dict(heldout_x=hx.loss[hix], heldout_y=hy.loss[hiy],
                       heldout_labels=[f"N={n:.3g}, D={d:.3g}" for n, d in
                                       zip(hx.n[hix], hx.d[hix])])
    fit = loss_to_loss_law.fit_loss_to_loss(
        fit_x.loss[ix], y.rows(~y_held).loss[iy], *offsets, kind=kind, labels=labels,
        groups=None if fit_x.run is None else fit_x.run[ix], **heldout)
    png = _plot(options, plots.plot_loss_to_loss, fit, name="loss_to_loss.png")
    notes.append(f"{len(ix)} fitted pairs; E_x from {offsets[0].n_points} runs, E_y from "
                 f"{offsets[1].n_points} runs.")
    shift = {k: v for k, v in fit.params.items() if k in ("K", "kappa")}  # E's: the offsets'
    checked = [(shift, "", None)] + [
        (offset.params, f"offset law of {label}: ", loss_to_loss_law.OFFSET_LOWER_BOUNDS)
        for offset, label in zip(offsets, labels)]
    warnings_ = guardrails.check(used, checked, _validated(options), len(fit.heldout),
                                 "loss-to-loss predicts the held-out "
                                 + ("runs' y losses" if same_runs else "x and y runs of equal "
                                    "N and D"))
    return Fitted(f"Loss-to-loss ({kind}): L_y = K (L_x - E_x)^kappa + E_y",
                  {"shifted power law": fit.params,
                   f"offset law, x = {labels[0]}": offsets[0].params,
                   f"offset law, y = {labels[1]}": offsets[1].params}, fit.heldout, png, fit,
                  notes, used, warnings_)


def _loss_to_loss_holdout(x: _Side, y: _Side, data: tuple, losses: tuple, dataset_col: str,
                          columns: Columns, options: FitOptions):
    """(x mask, y mask, (held x, held y) or None): the held-out rows of each side."""
    if options.heldout is not None:
        held = tuple(_side(options.heldout, columns, dataset_col, d, loss, [])
                     for d, loss in zip(data, losses))
        return np.zeros(len(x.n), bool), np.zeros(len(y.n), bool), held
    if options.holdout_factor:
        x_held = largest_runs(x.c, options.holdout_factor, x.run)
        y_held = largest_runs(y.c, options.holdout_factor, y.run)
        return x_held, y_held, (x.rows(x_held), y.rows(y_held))
    return np.zeros(len(x.n), bool), np.zeros(len(y.n), bool), None


def with_steps_to_target(table: Table, steps_col: str, n_col: str, curve: str = "train/loss",
                         smooth: int = 5, target_loss: float | None = None,
                         notes: list | None = None) -> Table:
    """`table` (run directories) with column `steps_col`: the steps each run took to reach its
    model size's target loss (`target_loss`, else per size the lowest loss all its runs reach,
    on the trailing mean of `smooth` logged points); runs that never reach it are dropped with
    a warning."""
    notes = [] if notes is None else notes
    n = table.numeric(n_col)
    curves = [h.curve(curve) for h in table["history"]]
    steps = np.full(len(table), np.nan)
    for size in np.unique(n):
        at = np.flatnonzero(n == size)
        target = (target_loss if target_loss is not None else
                  critical_batch.reachable_target([curves[i][1] for i in at], smooth))
        notes.append(f"N={size:.3g}: target {curve} {target:.4g}.")
        for i in at:
            steps[i] = critical_batch.steps_to_target(*curves[i], target, smooth)
    missed = np.isnan(steps)
    if missed.any():
        names = ", ".join(table["name"][missed])
        warnings.warn(f"{missed.sum()} run(s) never reach their target loss: {names}")
        notes.append(f"Runs that never reached the target (dropped): {names}.")
    return table.with_column(steps_col, steps).rows(~missed)


def cbs(table: Table, batch_col: str, steps_col: str, n_col: str = "params_non_embedding",
        options: FitOptions = FitOptions(), notes: list | None = None) -> Fitted:
    """Critical batch size: S(B) = S_min (1 + B_noise / B) per model size, and B* against N
    and D* (scaling/critical_batch.py), from each run's batch and steps to target. The largest
    model sizes (within options.holdout_factor) are held out."""
    bootstrap_settings(options.bootstrap, options.level)
    if options.heldout is not None:
        raise ValueError("cbs holds out its largest model size(s) with holdout_factor; a "
                         "separate held-out table is not supported for it")
    n, batch, steps = (table.numeric(k) for k in (n_col, batch_col, steps_col))
    mask = (largest_runs(n, options.holdout_factor) if options.holdout_factor
            else np.zeros(len(n), bool))
    names = run_names(table, [f"N={size:.3g} B={b:.3g}" for size, b in zip(n, batch)])
    used = [_usage("critical batch", names, mask, n, options, "model size")]
    fit = critical_batch.fit_critical_batch(n, batch, steps, heldout=mask,
                                            n_bootstrap=options.bootstrap, seed=options.seed,
                                            level=options.level)
    png = _plot(options, plots.plot_critical_batch, fit, name="critical_batch.png")
    per_size = {f"B* at N={s.n:.3g}": s.cbs for s in fit.sweeps}
    per_size.update({f"D* at N={s.n:.3g}": s.tokens for s in fit.sweeps})
    warnings_ = guardrails.check(used, [(fit.params, "", None)], _validated(options),
                                 len(fit.heldout), "the critical batch size is predicted at "
                                 "held-out model sizes") + _outside_batches(fit.sweeps)
    return Fitted(f"Critical batch size ({fit.overhead:.0%} over linear scaling)",
                  {"power laws (B* = N_coef N^N_exponent = D_coef D*^D_exponent)": fit.params,
                   "per model size": per_size}, fit.heldout, png, fit, list(notes or []), used,
                  warnings_)


def _outside_batches(sweeps) -> list[str]:
    """A warning for each model size whose B* lies outside the batch sizes it was measured at:
    S(B) = a + b/B is extrapolated there, and B* is a bound more than a measurement."""
    found = []
    for s in sweeps:
        low, high = float(np.min(s.batch)), float(np.max(s.batch))
        if not low <= s.cbs.value <= high:
            side = "below the smallest" if s.cbs.value < low else "above the largest"
            found.append(f"B* at N={s.n:.3g} = {s.cbs.value:.4g} lies {side} batch measured "
                         f"({low:.4g} to {high:.4g}): an extrapolation of S(B). Fix: train "
                         f"batch sizes on both sides of it")
    return found


def write(fitted: Fitted, out_dir: str, inputs: dict) -> list[str]:
    """fit.json and report.md of `fitted` in `out_dir` (scaling/report.py); returns the paths
    written, the plots included."""
    return report.write_report(out_dir, title=fitted.title, inputs=inputs,
                               tables=fitted.tables, heldout=fitted.heldout,
                               plots=fitted.plots, notes=fitted.notes, usage=fitted.usage,
                               warnings=fitted.warnings) + fitted.plots


def record(fitted: Fitted) -> dict:
    """What fit.json holds, as plain data (parameters with their intervals, held-out errors,
    the runs used and held out, and the guardrails' "warnings", a list of lines)."""
    return report.to_jsonable({**fitted.tables, "heldout_summary": summarize(fitted.heldout),
                               "usage": fitted.usage, "warnings": fitted.warnings})


def warn_unfinished(table: Table, notes: list) -> Table:
    """The finished runs of `table` (run directories), with a warning naming the others."""
    unfinished = ~table["finished"].astype(bool)
    if not unfinished.any():
        return table
    names = ", ".join(table["name"][unfinished])
    warnings.warn(f"skipping {unfinished.sum()} unfinished run(s) without final eval losses: "
                  f"{names}")
    notes.append(f"Skipped unfinished runs: {names}.")
    return table.rows(~unfinished)
