"""Fit a scaling law to run directories or a CSV table; write fit.json, report.md and a PNG.

    python -m scaling.fit --runs=runs/ladder --law=compute --report_dir=reports/compute
    python -m scaling.fit --runs runs/a runs/b ... --law=chinchilla --report_dir=reports/chinchilla
    python -m scaling.fit --table=tests/fixtures/chinchilla_approach3.csv --law=chinchilla \\
        --n_col="Model Size" --c_col="Training FLOP" --loss_col=loss --drop_highest_loss=5 \\
        --report_dir=reports/besiroglu
    python -m scaling.fit --table=tests/fixtures/loss_to_loss_sweep.csv --law=loss_to_loss \\
        --x_data=fineweb-edu-100b --y_data=starcoder --n_col=params --c_col=iso_flop \\
        --heldout_table=tests/fixtures/loss_to_loss_extrapolation.csv --report_dir=reports/l2l

(--report_dir was --out; it and the hyphenated spellings, --n-col, still work.)

Laws: compute (L(C) on the compute frontier), chinchilla (Approach 3, or --approach=2 for IsoFLOP
parabolas), loss_to_loss (--kind train_to_train | train_to_test | test_to_test) and cbs
(critical batch size). Column defaults fit run directories (scaling/runs.py) and the
loss-to-loss CSVs; --*_col flags name other columns. Without --d_col or --c_col columns in the
table, D = C / 6N or C = 6ND.

Held-out validation is on by default: runs within --holdout_factor (2x) of the largest compute
(for cbs: of the largest model size) are left out of the fit and predicted; --heldout_table
supplies held-out runs instead; --holdout_factor=0 turns it off. Run directories whose run did
not finish (no final eval) are skipped with a warning, except for cbs, which reads their
loss curves up to where they stopped.

Guardrails (scaling/guardrails.py): stderr gets a line per fitted data set naming the runs and
points fitted and held out, and a `warning: ` line for a degenerate fit (an estimate at its
interval's edge or on a bound) or a validation that predicted nothing; report.md and fit.json
hold the same. Fewer than 3 runs left to fit after the hold-out is refused (exit 2), with the
fix. stdout lists the files written.
"""
import re
import sys

import numpy as np

from core import cli
from scaling import chinchilla, compute_law, laws, loss_to_loss
from scaling.inputs import bootstrap_settings
from scaling.runs import curve_points, load_runs
from scaling.table import Table, read_csv

LAWS = ("chinchilla", "compute", "loss_to_loss", "cbs")
MIN_POINTS = {"compute": len(compute_law.PARAMS), "chinchilla": len(chinchilla.PARAMS),
              "loss_to_loss": len(loss_to_loss.OFFSET_PARAMS), "cbs": 2}


PARSER = cli.parser("python -m scaling.fit", __doc__)
_SOURCE = PARSER.add_mutually_exclusive_group(required=True)
_SOURCE.add_argument("--runs", nargs="+", help="run directories, or directories of them")
_SOURCE.add_argument("--table", help="CSV file, one row per run")
PARSER.add_argument("more_runs", nargs="*", metavar="DIR",
                    help="more run directories (--runs=DIR takes one; list the rest after it)")
PARSER.add_argument("--law", required=True, choices=LAWS)
cli.add_path(PARSER, "report_dir", required=True, old=("--out",),
             use="fit.json, report.md and the plots")
PARSER.add_argument("--approach", type=int, choices=(2, 3), default=3,
                    help="chinchilla approach")
PARSER.add_argument("--n_col", help="model size N (default: params_non_embedding for --runs, "
                                    "params for --table)")
PARSER.add_argument("--d_col", default="tokens", help="training tokens D")
PARSER.add_argument("--curves", action="store_true",
                    help="--runs: fit every validation point of each learning curve, not only "
                         "final losses (the frontier of a few sizes, Kaplan et al. 2020)")
PARSER.add_argument("--c_col", default="flops", help="training FLOPs C")
PARSER.add_argument("--loss_col", default="val_loss", help="final loss to fit")
PARSER.add_argument("--where", action="append", default=[], metavar="COL=VALUE",
                    help="keep only rows with COL equal to VALUE (repeatable)")
PARSER.add_argument("--drop_highest_loss", type=int, default=0, metavar="K",
                    help="drop the K highest-loss rows (Besiroglu et al. drop 5 of Chinchilla's)")
PARSER.add_argument("--holdout_factor", type=float, default=2.0,
                    help="hold out runs within this factor of the largest (0: none)")
PARSER.add_argument("--heldout_table", help="CSV of held-out runs to predict (same columns)")
PARSER.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
PARSER.add_argument("--level", type=float, default=0.95, help="interval level")
PARSER.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
PARSER.add_argument("--grid_starts", type=int, help="chinchilla approach 3: run L-BFGS from the "
                    "best K of the 4,500 grid starts only (default: all)")
PARSER.add_argument("--budget_col", help="approach 2: FLOP budget label (default: group C)")
PARSER.add_argument("--dataset_col", default="data", help="loss_to_loss: training-set column")
PARSER.add_argument("--x_data", help="loss_to_loss: training set of the x runs")
PARSER.add_argument("--y_data", help="loss_to_loss: training set of the y runs "
                                     "(train_to_test: the same as --x_data)")
PARSER.add_argument("--x_loss", default="val_loss", help="loss_to_loss: x loss column")
PARSER.add_argument("--y_loss", default="val_loss", help="loss_to_loss: y loss column")
PARSER.add_argument("--kind", choices=laws.KINDS, default="train_to_train",
                    help="loss_to_loss: which losses are paired")
PARSER.add_argument("--batch_col", help="cbs: batch size column (default: batch_tokens for "
                                        "--runs, batch_size for --table)")
PARSER.add_argument("--steps_col", default="steps_to_target",
                    help="cbs --table: steps each run needed to reach the target loss")
PARSER.add_argument("--curve", default="train/loss", help="cbs --runs: logged loss to follow")
PARSER.add_argument("--smooth", type=int, default=5,
                    help="cbs --runs: trailing mean over this many logged points")
PARSER.add_argument("--target_loss", type=float,
                    help="cbs --runs: target loss for every model size (default: per size, the "
                         "lowest loss all its runs reach)")


def parse_args(argv):
    args = PARSER.parse_args(argv)
    if args.more_runs:
        if not args.runs:
            PARSER.error(f"unexpected arguments {args.more_runs}: run directories follow --runs")
        args.runs += args.more_runs
    return args


def load(args) -> tuple[Table, Table | None, list[str]]:
    """The fitting table, the held-out table (or None), and notes on what was dropped."""
    notes = []
    if args.runs:
        table = load_runs(args.runs)
        if args.law != "cbs":
            table = laws.warn_unfinished(table, notes)
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


def check_enough(args, table: Table) -> None:
    """The fundamental shortage first, before a held-out split makes it look like another."""
    needed = MIN_POINTS[args.law]
    if len(table) <= needed:
        raise ValueError(f"{args.law}: {len(table)} run(s) for a law with {needed} parameters; "
                         "a fit needs more runs than parameters (train a ladder: more model "
                         "sizes and token budgets)")


def fit(args, table: Table, held: Table | None, notes: list[str]) -> laws.Fitted:
    """The law `args.law` of scaling.laws, with the command line's settings."""
    columns = laws.Columns(n=args.n_col or ("params_non_embedding" if args.runs else "params"),
                           d=args.d_col, c=args.c_col, loss=args.loss_col)
    options = laws.FitOptions(bootstrap=args.bootstrap, level=args.level, seed=args.seed,
                              holdout_factor=args.holdout_factor, heldout=held,
                              plot_dir=args.report_dir)
    if args.law == "compute":
        fitted = laws.compute(table, columns, options)
    elif args.law == "chinchilla":
        fitted = laws.chinchilla(table, columns, options, approach=args.approach,
                                 grid_starts=args.grid_starts, budget_col=args.budget_col)
    elif args.law == "loss_to_loss":
        fitted = laws.loss_to_loss(table, args.x_data, args.y_data, kind=args.kind,
                                   x_loss=args.x_loss, y_loss=args.y_loss,
                                   dataset_col=args.dataset_col, columns=columns,
                                   options=options)
    else:
        if args.runs:
            table = laws.with_steps_to_target(table, args.steps_col, columns.n, args.curve,
                                              args.smooth, args.target_loss, notes)
        batch_col = args.batch_col or ("batch_tokens" if args.runs else "batch_size")
        fitted = laws.cbs(table, batch_col, args.steps_col, columns.n, options)
    return fitted._replace(notes=notes + fitted.notes)


def run(argv) -> list[str]:
    """Parses `argv`, fits, writes the report; returns the written paths."""
    args = parse_args(argv)
    bootstrap_settings(args.bootstrap, args.level)
    table, held, notes = load(args)
    check_enough(args, table)
    fitted = fit(args, table, held, notes)
    source = args.table if args.table else " ".join(args.runs)
    inputs = {"source": source, "law": args.law, "rows": len(table),
              "bootstrap resamples": args.bootstrap, "interval level": args.level,
              "seed": args.seed}
    lines = [u.summary() for u in fitted.usage] + [f"warning: {w}" for w in fitted.warnings]
    print("\n".join(in_flag_names(line) for line in lines), file=sys.stderr, flush=True)
    return laws.write(fitted, args.report_dir, inputs)


def in_flag_names(message: str) -> str:
    """A scaling.laws error in the command line's words: its argument names (x_data, y_loss,
    ...) spelled as their flags (--x_data, --y_loss)."""
    for action in PARSER._actions:
        if "_" in action.dest and action.option_strings:
            message = re.sub(rf"\b{action.dest}\b", action.option_strings[0], message)
    return message


@cli.main(ValueError, describe=lambda error: in_flag_names(str(error)))
def main(argv) -> None:
    print("\n".join(run(argv)))


if __name__ == "__main__":
    sys.exit(main())
