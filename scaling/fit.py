"""Fit a scaling law to run directories or a CSV table; write fit.json, report.md and a PNG.

    python -m scaling.fit --runs=runs/ladder --law=compute --out=reports/compute
    python -m scaling.fit --runs runs/a runs/b ... --law=chinchilla --out=reports/chinchilla
    python -m scaling.fit --table=tests/data/chinchilla_approach3.csv --law=chinchilla \\
        --n-col="Model Size" --c-col="Training FLOP" --loss-col=loss --drop-highest-loss=5 \\
        --out=reports/besiroglu
    python -m scaling.fit --table=tests/data/loss_to_loss_sweep.csv --law=loss_to_loss \\
        --x-data=fineweb-edu-100b --y-data=starcoder --n-col=params --c-col=iso_flop \\
        --heldout-table=tests/data/loss_to_loss_extrapolation.csv --out=reports/l2l

Laws: compute (L(C) on the compute frontier), chinchilla (Approach 3, or --approach=2 for IsoFLOP
parabolas), loss_to_loss (--kind train_to_train | train_to_test | test_to_test) and cbs
(critical batch size). Column defaults fit run directories (scaling/runs.py) and the
loss-to-loss CSVs; --*-col flags name other columns. Without --d-col or --c-col columns in the
table, D = C / 6N or C = 6ND.

Held-out validation is on by default: runs within --holdout-factor (2x) of the largest compute
(for cbs: of the largest model size) are left out of the fit and predicted; --heldout-table
supplies held-out runs instead; --holdout-factor=0 turns it off. Run directories whose run did
not finish (no final eval) are skipped with a warning, except for cbs, which reads their
loss curves up to where they stopped.
"""
import argparse
import os
import sys
import warnings
from typing import Any, NamedTuple

import numpy as np

from scaling import chinchilla, compute_law, critical_batch, loss_to_loss, plots, report
from scaling.inputs import bootstrap_settings
from scaling.runs import curve_points, load_runs
from scaling.table import Table, read_csv
from scaling.validation import largest_runs


class Fitted(NamedTuple):
    """One law's fit: the report's title, tables, held-out predictions and plot paths, and the
    fit object itself (its point estimate and bootstrap draws, for predictions downstream)."""
    title: str
    tables: dict
    heldout: Any
    plots: list
    fit: Any


LAWS = ("chinchilla", "compute", "loss_to_loss", "cbs")
KINDS = ("train_to_train", "train_to_test", "test_to_test")
MIN_POINTS = {"compute": len(compute_law.PARAMS), "chinchilla": len(chinchilla.PARAMS),
              "loss_to_loss": len(loss_to_loss.OFFSET_PARAMS), "cbs": 2}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m scaling.fit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--runs", nargs="+", help="run directories, or directories of them")
    source.add_argument("--table", help="CSV file, one row per run")
    p.add_argument("more_runs", nargs="*", metavar="DIR",
                   help="more run directories (--runs=DIR takes one; list the rest after it)")
    p.add_argument("--law", required=True, choices=LAWS)
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--approach", type=int, choices=(2, 3), default=3, help="chinchilla approach")
    p.add_argument("--n-col", help="model size N (default: params_non_embedding for --runs, "
                                   "params for --table)")
    p.add_argument("--d-col", default="tokens", help="training tokens D")
    p.add_argument("--curves", action="store_true",
                   help="--runs: fit every validation point of each learning curve, not only "
                        "final losses (the frontier of a few sizes, Kaplan et al. 2020)")
    p.add_argument("--c-col", default="flops", help="training FLOPs C")
    p.add_argument("--loss-col", default="val_loss", help="final loss to fit")
    p.add_argument("--where", action="append", default=[], metavar="COL=VALUE",
                   help="keep only rows with COL equal to VALUE (repeatable)")
    p.add_argument("--drop-highest-loss", type=int, default=0, metavar="K",
                   help="drop the K highest-loss rows (Besiroglu et al. drop 5 of Chinchilla's)")
    p.add_argument("--holdout-factor", type=float, default=2.0,
                   help="hold out runs within this factor of the largest (0: none)")
    p.add_argument("--heldout-table", help="CSV of held-out runs to predict (same columns)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--level", type=float, default=0.95, help="interval level")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid-starts", type=int, help="chinchilla approach 3: run L-BFGS from the "
                   "best K of the 4,500 grid starts only (default: all)")
    p.add_argument("--budget-col", help="approach 2: FLOP budget label (default: group C)")
    p.add_argument("--dataset-col", default="data", help="loss_to_loss: training-set column")
    p.add_argument("--x-data", help="loss_to_loss: training set of the x runs")
    p.add_argument("--y-data", help="loss_to_loss: training set of the y runs "
                                    "(train_to_test: the same as --x-data)")
    p.add_argument("--x-loss", default="val_loss", help="loss_to_loss: x loss column")
    p.add_argument("--y-loss", default="val_loss", help="loss_to_loss: y loss column")
    p.add_argument("--kind", choices=KINDS, default="train_to_train")
    p.add_argument("--batch-col", help="cbs: batch size column (default: batch_tokens for "
                                       "--runs, batch_size for --table)")
    p.add_argument("--steps-col", default="steps_to_target",
                   help="cbs --table: steps each run needed to reach the target loss")
    p.add_argument("--curve", default="train/loss", help="cbs --runs: logged loss to follow")
    p.add_argument("--smooth", type=int, default=5,
                   help="cbs --runs: trailing mean over this many logged points")
    p.add_argument("--target-loss", type=float,
                   help="cbs --runs: target loss for every model size (default: per size, the "
                        "lowest loss all its runs reach)")
    args = p.parse_args(argv)
    if args.more_runs:
        if not args.runs:
            p.error(f"unexpected arguments {args.more_runs}: run directories follow --runs")
        args.runs += args.more_runs
    return args


def load(args) -> tuple[Table, Table | None, list[str]]:
    """The fitting table, the held-out table (or None), and notes on what was dropped."""
    notes = []
    if args.runs:
        table = load_runs(args.runs)
        unfinished = ~table["finished"].astype(bool)
        if unfinished.any() and args.law != "cbs":
            names = ", ".join(table["name"][unfinished])
            warnings.warn(f"skipping {unfinished.sum()} unfinished run(s) without final eval "
                          f"losses: {names}")
            notes.append(f"Skipped unfinished runs: {names}.")
            table = table.rows(~unfinished)
        if args.curves:
            table = curve_points(table)
            notes.append("Points: every validation point of every run's learning curve "
                         "(--curves).")
    else:
        table = read_csv(args.table)
    held = read_csv(args.heldout_table) if args.heldout_table else None
    for condition in args.where:
        column, _, value = condition.partition("=")
        table, held = (_where(t, column, value) if t is not None else None
                       for t in (table, held))
    if len(table) == 0:
        raise ValueError(f"no rows left after --where {' '.join(args.where)}")
    if args.drop_highest_loss:
        order = np.argsort(table.numeric(args.loss_col), kind="stable")
        table = table.rows(np.sort(order[:len(table) - args.drop_highest_loss]))
        notes.append(f"Dropped the {args.drop_highest_loss} highest-loss rows.")
    return table, held, notes


def _where(table: Table, column: str, value: str) -> Table:
    values = table[column]
    if values.dtype.kind not in "fiu":
        return table.rows(values.astype(str) == value)
    try:
        return table.rows(values == float(value))
    except ValueError:
        raise ValueError(f"--where {column}={value}: {column} is numeric; give a number") from None


def sizes(args, table: Table, notes: list[str]) -> dict[str, np.ndarray]:
    """N, D and C columns, deriving D = C / 6N or C = 6ND when one is absent."""
    n_col = args.n_col or ("params_non_embedding" if args.runs else "params")
    n = table.numeric(n_col)
    if args.d_col in table:
        d = table.numeric(args.d_col)
        c = table.numeric(args.c_col) if args.c_col in table else 6 * n * d
    else:
        c = table.numeric(args.c_col)
        d = c / (6 * n)
        notes.append(f"No {args.d_col!r} column: D = C / (6 N).")
    return {"n": n, "d": d, "c": c}


def combined(args, table: Table, held: Table | None, notes: list[str], key: str):
    """Columns of the fitting and held-out rows stacked, and the held-out mask: rows of
    --heldout-table, or those within --holdout-factor of the largest `key` (c or n)."""
    columns = {**sizes(args, table, notes), "loss": table.numeric(args.loss_col)}
    if held is not None:
        extra = {**sizes(args, held, []), "loss": held.numeric(args.loss_col)}
        mask = np.r_[np.zeros(len(table), bool), np.ones(len(held), bool)]
        return {k: np.r_[columns[k], extra[k]] for k in columns}, mask
    if args.holdout_factor == 0:
        return columns, np.zeros(len(table), bool)
    return columns, largest_runs(columns[key], args.holdout_factor)


def check_enough(args, table: Table) -> None:
    """The fundamental shortage first, before a held-out split makes it look like another."""
    needed = MIN_POINTS[args.law]
    if len(table) <= needed:
        raise ValueError(f"{args.law}: {len(table)} run(s) for a law with {needed} parameters; "
                         "a fit needs more runs than parameters (train a ladder: more model "
                         "sizes and token budgets)")


def fit_compute(args, table, held, notes):
    cols, mask = combined(args, table, held, notes, "c")
    fit = compute_law.fit_compute_law(cols["c"], cols["loss"], heldout=mask,
                                      n_bootstrap=args.bootstrap, seed=args.seed,
                                      level=args.level)
    png = plots.plot_compute_law(fit, cols["c"][~mask], cols["loss"][~mask],
                                 os.path.join(args.out, "compute_law.png"))
    notes.append(f"{fit.frontier.sum()} of {(~mask).sum()} fitted runs lie on the compute "
                 "frontier.")
    return Fitted("Compute law L(C) = E + A C^-alpha", {"parameters": fit.params}, fit.heldout,
                  [png], fit)


def fit_chinchilla(args, table, held, notes):
    cols, mask = combined(args, table, held, notes, "c")
    if args.approach == 2:
        budgets = None if args.budget_col is None else np.r_[
            table.numeric(args.budget_col),
            held.numeric(args.budget_col) if held is not None else []]
        fit = chinchilla.fit_approach2(cols["n"], cols["d"], cols["c"], cols["loss"],
                                       budgets=budgets, heldout=mask,
                                       n_bootstrap=args.bootstrap, seed=args.seed,
                                       level=args.level)
        labels = chinchilla.group_budgets(cols["c"]) if budgets is None else budgets
        png = plots.plot_isoflop(fit, cols["n"][~mask], cols["loss"][~mask], labels[~mask],
                                 os.path.join(args.out, "chinchilla_approach2.png"))
        return Fitted("Chinchilla Approach 2 (IsoFLOP parabolas)", {"allocation": fit.params},
                      fit.heldout, [png], fit)
    fit = chinchilla.fit_approach3(cols["n"], cols["d"], cols["loss"], heldout=mask,
                                   n_bootstrap=args.bootstrap, seed=args.seed, level=args.level,
                                   keep_best=args.grid_starts)
    png = plots.plot_chinchilla(fit, cols["n"][~mask], cols["d"][~mask], cols["loss"][~mask],
                                os.path.join(args.out, "chinchilla.png"))
    largest = cols["c"][~mask].max()
    budgets = largest * np.array([1, 10, 100])
    allocation = fit.optimal_allocation(budgets)
    table_ = {f"{k} at C={c:.3g}": v[i] for k, v in allocation.items()
              for i, c in enumerate(budgets)}
    notes.append(f"L-BFGS ran from {fit.n_starts} grid starts; {fit.n_agree} reached the "
                 "optimum. Bootstrap resamples start from the full-data optimum and the best grid "
                 "starts.")
    params = {k: v for k, v in fit.params.items() if k in chinchilla.PARAMS}
    exponents = {k: v for k, v in fit.params.items() if k in chinchilla.ALLOCATION}
    return Fitted("Chinchilla Approach 3: L(N, D) = E + A/N^alpha + B/D^beta",
                  {"parameters": params, "compute-optimal exponents (N* = G (C/6)^a, "
                   "D* = (C/6)^b / G)": exponents, "compute-optimal allocation": table_},
                  fit.heldout, [png], fit)


def fit_loss_to_loss(args, table, held, notes):
    if args.x_data is None:
        raise ValueError("loss_to_loss needs --x-data (the x runs' training set, a value of "
                         f"--dataset-col={args.dataset_col})")
    same_runs = args.kind == "train_to_test"
    y_data = args.x_data if same_runs and args.y_data is None else args.y_data
    if y_data is None:
        raise ValueError(f"--kind={args.kind} needs --y-data (the y runs' training set)")
    if same_runs and y_data != args.x_data:
        raise ValueError("train_to_test compares two losses of the same runs: --y-data must "
                         "equal --x-data (set --y-loss to the other distribution's loss)")

    def side(t, data, loss_col):
        rows = t.rows(t[args.dataset_col].astype(str) == data)
        if len(rows) == 0:
            raise ValueError(f"no rows with {args.dataset_col}={data!r}; values: "
                             f"{', '.join(np.unique(t[args.dataset_col].astype(str)))}")
        cols = sizes(args, rows, notes)
        return cols["n"], cols["d"], cols["c"], rows.numeric(loss_col)

    x_n, x_d, x_c, x_loss = side(table, args.x_data, args.x_loss)
    y_n, y_d, y_c, y_loss = side(table, y_data, args.y_loss)
    if held is not None:
        hx, hy = side(held, args.x_data, args.x_loss), side(held, y_data, args.y_loss)
        x_held, y_held = np.zeros(len(x_n), bool), np.zeros(len(y_n), bool)
    elif args.holdout_factor:
        x_held = largest_runs(x_c, args.holdout_factor)
        y_held = largest_runs(y_c, args.holdout_factor)
        hx = tuple(a[x_held] for a in (x_n, x_d, x_c, x_loss))
        hy = tuple(a[y_held] for a in (y_n, y_d, y_c, y_loss))
    else:
        x_held, y_held, hx, hy = np.zeros(len(x_n), bool), np.zeros(len(y_n), bool), None, None

    def pair(x, y):
        if same_runs:
            return np.arange(len(x[0])), np.arange(len(x[0]))
        return loss_to_loss.pair_by_size(x[0], x[1], y[0], y[1])

    offsets = [loss_to_loss.fit_offset_law(n[~h], d[~h], loss[~h], n_bootstrap=args.bootstrap,
                                           seed=args.seed, level=args.level)
               for n, d, loss, h in ((x_n, x_d, x_loss, x_held), (y_n, y_d, y_loss, y_held))]
    fx = tuple(a[~x_held] for a in (x_n, x_d, x_c, x_loss))
    fy = tuple(a[~y_held] for a in (y_n, y_d, y_c, y_loss))
    ix, iy = pair(fx, fy)
    if len(ix) == 0:
        raise ValueError(f"no {args.x_data} and {y_data} runs share (N, D); train-to-train and "
                         "test-to-test pair models by size")
    heldout = {}
    if hx is not None:
        hix, hiy = pair(hx, hy)
        heldout = dict(heldout_x=hx[3][hix], heldout_y=hy[3][hiy],
                       heldout_labels=[f"N={n:.3g}, D={d:.3g}" for n, d in
                                       zip(hx[0][hix], hx[1][hix])])
    x_label = f"{args.x_loss} ({args.x_data})"
    y_label = f"{args.y_loss} ({y_data})"
    fit = loss_to_loss.fit_loss_to_loss(fx[3][ix], fy[3][iy], *offsets, kind=args.kind,
                                        labels=(x_label, y_label), **heldout)
    png = plots.plot_loss_to_loss(fit, os.path.join(args.out, "loss_to_loss.png"))
    notes.append(f"{len(ix)} fitted pairs; E_x from {offsets[0].n_points} runs, E_y from "
                 f"{offsets[1].n_points} runs.")
    return Fitted(f"Loss-to-loss ({args.kind}): L_y = K (L_x - E_x)^kappa + E_y",
                  {"shifted power law": fit.params,
                   f"offset law, x = {x_label}": offsets[0].params,
                   f"offset law, y = {y_label}": offsets[1].params}, fit.heldout, [png], fit)


def steps_from_runs(args, table: Table, notes: list[str]) -> Table:
    """Adds the steps each run took to reach its model size's target loss; runs that never
    reach it are dropped with a warning."""
    n = table.numeric(args.n_col or "params_non_embedding")
    curves = [h.curve(args.curve) for h in table["history"]]
    steps = np.full(len(table), np.nan)
    for size in np.unique(n):
        at = np.flatnonzero(n == size)
        target = (args.target_loss if args.target_loss is not None else
                  critical_batch.reachable_target([curves[i][1] for i in at], args.smooth))
        notes.append(f"N={size:.3g}: target {args.curve} {target:.4g}.")
        for i in at:
            steps[i] = critical_batch.steps_to_target(*curves[i], target, args.smooth)
    missed = np.isnan(steps)
    if missed.any():
        names = ", ".join(table["name"][missed])
        warnings.warn(f"{missed.sum()} run(s) never reach their target loss: {names}")
        notes.append(f"Runs that never reached the target (dropped): {names}.")
    return table.with_column(args.steps_col, steps).rows(~missed)


def fit_cbs(args, table, held, notes):
    if args.runs:
        table = steps_from_runs(args, table, notes)
    n = table.numeric(args.n_col or ("params_non_embedding" if args.runs else "params"))
    batch = table.numeric(args.batch_col or ("batch_tokens" if args.runs else "batch_size"))
    steps = table.numeric(args.steps_col)
    mask = np.zeros(len(n), bool)
    if held is not None:
        raise ValueError("cbs holds out its largest model size(s) with --holdout-factor; "
                         "--heldout-table is not supported for it")
    if args.holdout_factor:
        mask = largest_runs(n, args.holdout_factor)
    fit = critical_batch.fit_critical_batch(n, batch, steps, heldout=mask,
                                            n_bootstrap=args.bootstrap, seed=args.seed,
                                            level=args.level)
    png = plots.plot_critical_batch(fit, os.path.join(args.out, "critical_batch.png"))
    per_size = {f"B* at N={s.n:.3g}": s.cbs for s in fit.sweeps}
    per_size.update({f"D* at N={s.n:.3g}": s.tokens for s in fit.sweeps})
    return Fitted(f"Critical batch size ({fit.overhead:.0%} over linear scaling)",
                  {"power laws (B* = N_coef N^N_exponent = D_coef D*^D_exponent)": fit.params,
                   "per model size": per_size}, fit.heldout, [png], fit)


FITS = {"compute": fit_compute, "chinchilla": fit_chinchilla, "loss_to_loss": fit_loss_to_loss,
        "cbs": fit_cbs}


def run(argv) -> list[str]:
    """Parses `argv`, fits, writes the report; returns the written paths."""
    return fit_and_report(argv)[0]


def fit_and_report(argv) -> tuple[list[str], Fitted]:
    """`run`, also returning the fit (for callers that predict from its bootstrap draws)."""
    args = parse_args(argv)
    bootstrap_settings(args.bootstrap, args.level)
    table, held, notes = load(args)
    check_enough(args, table)
    os.makedirs(args.out, exist_ok=True)
    fitted = FITS[args.law](args, table, held, notes)
    source = args.table if args.table else " ".join(args.runs)
    inputs = {"source": source, "law": args.law, "rows": len(table),
              "bootstrap resamples": args.bootstrap, "interval level": args.level,
              "seed": args.seed}
    paths = report.write_report(args.out, title=fitted.title, inputs=inputs,
                                tables=fitted.tables, heldout=fitted.heldout,
                                plots=fitted.plots, notes=notes)
    return paths + fitted.plots, fitted


def main(argv=None) -> None:
    try:
        paths = run(sys.argv[1:] if argv is None else argv)
    except ValueError as error:
        sys.exit(f"error: {error}")
    print("\n".join(paths))


if __name__ == "__main__":
    main()
