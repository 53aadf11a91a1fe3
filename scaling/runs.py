"""Run directories (lm.train workdirs) -> one Table row per run.

A run directory holds config.json, model.json and metrics.jsonl (core/run_format.py; the rows'
schema is in lm/train/metrics_log.py).
Columns of the table `load_runs` returns:

    name, path              directory name and path
    data                    training corpus (config data.corpus; a source by its name)
    optimizer, lr           config optimizer.name, optimizer.lr
    batch_size, seq_len     sequences per step and tokens per sequence (config)
    batch_tokens            batch_size * seq_len
    steps, last_step        configured train.steps and the last logged step
    params_non_embedding    N (model.json params/non_embedding), the size scaling laws use
    params_total            model.json params/total
    tokens, flops           D and C: training tokens and FLOPs at the last logged step
    train_loss              train/loss at the last logged step (one batch: noisy)
    eval/<set>/loss         final validation loss on each eval set (NaN if the run has none)
    val_loss                final eval loss on the training corpus's own validation split
    finished                last_step reached `steps` and the final step has eval losses
    history                 a History: per-step curves, for steps-to-target (critical batch)

Unfinished runs (crashed, killed, still training) stay in the table with finished=False and NaN
final eval losses, as of their last complete row (a row being written is not read), so the
caller decides: the fits on final losses skip them with a warning
(scaling/fit.py); the critical-batch fit still reads their history up to where they stopped.
"""
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.run_format import CONFIG, METRICS, MODEL, RUN_FILES, parse_json, parse_metrics
from data import sources
from scaling.table import Table


@dataclass(frozen=True)
class History:
    """Logged curves of one run: for each loss key, the steps it was logged at and its values."""
    curves: dict

    def curve(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        if key not in self.curves:
            raise ValueError(f"no {key!r} in this run's metrics; it logs: {', '.join(self.curves)}")
        return self.curves[key]


def find_run_dirs(paths: list[str]) -> list[Path]:
    """Each path is a run directory or a directory whose subdirectories are runs."""
    found = []
    for path in map(Path, paths):
        if (path / METRICS).exists():
            found.append(path)
            continue
        children = sorted(p for p in path.glob("*") if (p / METRICS).exists())
        if not children:
            raise ValueError(f"{path}: neither a run directory (config.json, model.json, "
                             "metrics.jsonl) nor a directory of them")
        found.extend(children)
    return found


def read_metrics_rows(path: Path) -> list[dict]:
    """metrics.jsonl rows; a torn last line is dropped with a warning, so that one crashed run,
    or a run writing a row as it is read, does not stop the loading of a whole ladder."""
    rows, torn = parse_metrics(path.read_text(errors="replace"), path)  # bad bytes: bad JSON
    if torn:
        warnings.warn(f"{path}: last line is incomplete (the run was killed, or is writing it); "
                      "dropped")
    return rows


def load_run(path: Path) -> dict | None:
    """One run directory as a table row (see the module docstring for the columns); None, with
    a warning, for a run with no complete metrics row yet (starting, or killed before its first
    log), which has nothing to fit. A damaged config.json or model.json is DamagedFile."""
    for name in RUN_FILES:
        if not (path / name).exists():
            raise ValueError(f"{path}: missing {name}; a run directory from lm.train has "
                             f"{', '.join(RUN_FILES)}")
    config = parse_json((path / CONFIG).read_bytes(), path / CONFIG)
    model = parse_json((path / MODEL).read_bytes(), path / MODEL)
    rows = read_metrics_rows(path / METRICS)
    if not rows:
        warnings.warn(f"{path}: no complete row in metrics.jsonl yet (the run is starting, or "
                      "was killed before its first log); left out")
        return None
    last = rows[-1]
    evals = {k: v for k, v in last.items() if k.startswith("eval/") and k.endswith("/loss")}
    corpus = sources.display_name(config["data"]["corpus"], config["data"].get("sources"))
    expects_eval = bool(config["data"].get("eval_corpora"))
    train = config["train"]
    finished = last["step"] >= train["steps"] and (bool(evals) or not expects_eval)
    return {
        "name": path.name, "path": str(path), "data": corpus,
        "optimizer": config["optimizer"]["name"], "lr": config["optimizer"]["lr"],
        "batch_size": train["batch_size"], "seq_len": config["data"]["seq_len"],
        "batch_tokens": train["batch_size"] * config["data"]["seq_len"],
        "steps": train["steps"], "last_step": last["step"],
        "params_non_embedding": model["params/non_embedding"],
        "params_total": model["params/total"],
        "tokens": last["tokens"], "flops": last["flops"],
        "train_loss": last.get("train/loss", np.nan),
        **evals,
        "val_loss": evals.get(f"eval/{corpus}/loss", np.nan),
        "finished": finished,
        "history": History(_curves(rows)),
    }


def _unique_names(paths: list[Path]) -> list[str]:
    """The shortest path suffix of each of `paths` that no other path shares."""
    depth = {path: 1 for path in paths}
    while True:
        names = {path: "/".join(path.parts[-depth[path]:]) for path in paths}
        taken = {}
        for path, name in names.items():
            taken.setdefault(name, []).append(path)
        clashes = [path for same in taken.values() if len(same) > 1 for path in same
                   if depth[path] < len(path.parts)]
        if not clashes:
            return [names[path] for path in paths]
        for path in clashes:
            depth[path] += 1


def _curves(rows: list[dict]) -> dict:
    keys = sorted({k for row in rows for k in row if k.endswith("loss")})
    curves = {}
    for key in keys:
        logged = [(row["step"], row[key]) for row in rows if key in row]
        curves[key] = tuple(np.array(column, dtype=float) for column in zip(*logged))
    return curves


def curve_points(table: Table) -> Table:
    """One row per logged validation point of every run (steps that have the training corpus's
    eval loss): val_loss, every eval/<set>/loss, tokens and flops at that step, name
    "<run>@<step>" (train-to-test loss-to-loss pairs these points' losses) and `run`, the run's
    name (fits resample and hold out whole runs by it). The envelope of
    these learning curves is Kaplan et al.'s compute frontier (2020, Fig. 1), which a ladder of
    a few sizes fills with many budgets; points before the end of a decaying schedule sit
    above what a run of that length would reach, so the envelope is conservative."""
    records = []
    for i in range(len(table)):
        row = {name: table[name][i] for name in table.names}
        history = row["history"]
        steps, losses = history.curve(f"eval/{row['data']}/loss")
        evals = {key: dict(zip(*history.curve(key))) for key in history.curves
                 if key.startswith("eval/")}
        for step, loss in zip(steps, losses):
            fraction = step / row["last_step"]
            records.append({**row, "name": f"{row['name']}@{int(step)}", "run": row["name"],
                            "last_step": step,
                            "tokens": row["tokens"] * fraction,
                            "flops": row["flops"] * fraction, "val_loss": loss,
                            **{key: at.get(step, np.nan) for key, at in evals.items()}})
    names = list(dict.fromkeys(k for record in records for k in record))
    return Table({name: [record.get(name, np.nan) for record in records] for name in names})


def load_runs(paths: list[str]) -> Table:
    """All runs under `paths` as one Table; eval sets missing from a run read NaN. Each run's
    name is its directory's name, or as many of its last path parts as tell it apart from the
    others' (a study's tune/d32_l2/X and tune/d48_l2/X): fits resample and hold out runs by
    name. A run with no complete metrics row yet is left out (load_run)."""
    loaded = [(path, load_run(path)) for path in find_run_dirs(paths)]
    found, records = [p for p, r in loaded if r], [r for _, r in loaded if r]
    for record, name in zip(records, _unique_names(found)):
        record["name"] = name
    names = list(dict.fromkeys(k for record in records for k in record))
    return Table({name: [record.get(name, np.nan) for record in records] for name in names})
