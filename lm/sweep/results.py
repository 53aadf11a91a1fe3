"""The sweep's tables: one row per run (ROOT/results.csv), the best learning rate of each grid
(ROOT/best_lr.csv), and the summary printed at the end of a sweep.

Learning rates are selected as the seed papers tune each optimizer before comparing them: within
each group of runs that differ only in lr (same size, optimizer, and any other axis), the
finished run with the lowest validation loss on its own training corpus wins. A winner at either
end of its grid is flagged: the optimum may lie beyond it.
"""
import csv
import io
import math
import os

from data import sources
from lm.sweep.spec import Run, format_value, ordered_keys, run_model_info
from lm.sweep.state import Progress, read_model_json
from lm.train import workdir as run_files

HEAD = ("name", "status", "action")
SIZE_AND_LOSS = ("params_total", "params_non_embedding", "steps", "step", "tokens", "flops",
                 "train_loss", "val_loss")
TAIL = ("wall_s", "error")
BEST_COLUMNS = ("best_lr", "val_loss", "run", "finished", "grid", "edge")


def result_row(run: Run, workdir: str, progress: Progress, action: str) -> dict:
    """A run's results.csv row; `action` says what this invocation did (trained, resumed,
    skipped, or "" for not reached). Keys without a value (a run that never logged) are left
    out, and the CSV leaves their cells empty."""
    info = read_model_json(workdir) or run_model_info(run.config)
    last, evals = progress.last_row, progress.eval_row
    row = {"name": run.name, "status": progress.status, "action": action,
           "optimizer": run.config.optimizer.name, "lr": run.config.optimizer.lr, **run.overrides,
           "params_total": info["params/total"],
           "params_non_embedding": info["params/non_embedding"],
           "steps": run.config.train.steps, "step": last.get("step", 0)}
    for column, key in (("tokens", "tokens"), ("flops", "flops"), ("train_loss", "train/loss")):
        if key in last:
            row[column] = last[key]
    d = run.config.data
    validation = f"eval/{sources.display_name(d.corpus, dict(d.sources or {}))}/loss"
    if validation in evals:
        row["val_loss"] = evals[validation]
    row.update({k: v for k, v in evals.items() if k.startswith("eval/")})
    if "wall_s" in progress.record:
        row["wall_s"] = round(progress.record["wall_s"], 1)
    if progress.status in ("failed", "diverged", "stopped"):
        row["error"] = progress.record.get("error", "")
    return row


def write_results(path: str, rows: list[dict], axis_keys: list[str]) -> None:
    """results.csv: the columns of HEAD, the sweep's axes (`axis_keys`; optimizer and lr
    always), SIZE_AND_LOSS, every eval/<set>/{loss,bpb}, and TAIL."""
    evals = sorted({k for row in rows for k in row if k.startswith("eval/")})
    axes = ordered_keys({key: None for key in [*axis_keys, "optimizer", "lr"]})
    _write_csv(path, rows, [*HEAD, *axes, *SIZE_AND_LOSS, *evals, *TAIL])


def best_learning_rates(rows: list[dict], group_keys: list[str]) -> list[dict]:
    """One row per group of `rows` sharing the values of `group_keys`: its best lr, that run's
    validation loss and name, how many of its runs finished, its lr grid, and `edge` ("low" or
    "high" when the best lr is the smallest or largest of a grid of two or more)."""
    groups = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k, "") for k in group_keys), []).append(row)
    table = []
    for values, members in groups.items():
        grid = sorted({float(r["lr"]) for r in members})
        done = [r for r in members if r["status"] == "finished"
                and math.isfinite(float(r.get("val_loss", math.nan)))]
        best = min(done, key=lambda r: float(r["val_loss"])) if done else None
        entry = {**dict(zip(group_keys, values)), "best_lr": None, "val_loss": None, "run": None,
                 "finished": f"{len(done)}/{len(members)}",
                 "grid": " ".join(format_value(lr) for lr in grid), "edge": ""}
        if best is not None:
            lr = float(best["lr"])
            entry.update(best_lr=lr, val_loss=best["val_loss"], run=best["name"])
            if len(grid) > 1 and lr in (grid[0], grid[-1]):
                entry["edge"] = "low" if lr == grid[0] else "high"
        table.append(entry)
    return table


def write_best(path: str, table: list[dict], group_keys: list[str]) -> None:
    _write_csv(path, table, [*group_keys, *BEST_COLUMNS])


def summary(rows: list[dict], best: list[dict], group_keys: list[str], root: str) -> str:
    """The text printed when a sweep ends: status counts, the runs that did not finish and
    why, and the best learning rates with a warning for each at the edge of its grid."""
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    lines = [f"sweep: {len(rows)} runs: "
             + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
             + f"; table in {os.path.join(root, 'results.csv')}"]
    for row in rows:
        if row["status"] in ("failed", "diverged", "stopped"):
            error = row.get("error", "").splitlines()[0][:200] if row.get("error") else ""
            lines.append(f"  {row['status']:<8}  {row['name']}: {error}")
    if best:
        groups = f"per ({', '.join(group_keys)})" if group_keys else "of the grid"
        lines.append(f"best lr {groups}, on the validation loss of the training corpus (also in "
                     f"{os.path.join(root, 'best_lr.csv')}):")
        lines.append(format_table(
            [*group_keys, "best_lr", "val_loss", "finished", "grid"],
            [[format_value(e[k]) for k in group_keys]
             + [format_value(e["best_lr"]) if e["run"] else "-",
                f"{e['val_loss']:.4f}" if e["run"] else "-", e["finished"], e["grid"]]
             for e in best]))
        for e in best:
            if e["edge"]:
                where = "smallest" if e["edge"] == "low" else "largest"
                lines.append(f"warning: {e['run']}: the best lr {format_value(e['best_lr'])} is "
                             f"the {where} of its grid ({e['grid']}); the optimum may lie "
                             "beyond it: extend the grid")
    return "\n".join(lines)


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in [header, *rows])


def _write_csv(path: str, rows: list[dict], columns: list[str]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, columns, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    run_files.write_text(path, text.getvalue())
