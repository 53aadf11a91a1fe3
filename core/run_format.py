"""The files of a run directory that lm.train writes and scaling reads: their names, and how a
run file is read. Here, below both, since scaling may not import lm; what each row of
metrics.jsonl holds is the trainer's (lm/train/metrics_log.py).

Every JSON run file the tools read (config.json, model.json, data.json, provenance.json,
sweep.json, study.json, planned.json, sweep_run.json) is parsed by `parse_json`, each line of
metrics.jsonl by `parse_metrics`, and a CSV table (results.csv) is checked with `damaged`'s
message too (scaling/table.py): a file torn by a kill or a full disk, or edited, is one
DamagedFile naming it and the fix, which every tool prints as one `error:` line (core/cli.py).
"""
import json
import os

from core.cli import UsageError

CONFIG = "config.json"      # the resolved config
MODEL = "model.json"        # the model's shape fields, parameter counts and FLOPs per token
METRICS = "metrics.jsonl"   # one JSON object per logged step
RUN_FILES = (CONFIG, MODEL, METRICS)  # what scaling reads of every run


class DamagedFile(UsageError):
    """A run file that is torn, edited or not what it should be. A UsageError (bad input), so
    every tool's cli.main prints it as `error: MESSAGE` and exits with status 2."""


def damaged(path, problem: str, fix: str = "") -> DamagedFile:
    """The error for file `path`: what is wrong with it (`problem`) and `fix`, by default to
    restore it or set its directory aside (a run file is rewritten whole, so a copy is the only
    repair)."""
    fix = fix or (f"restore it from a copy, or move {os.path.dirname(os.fspath(path))} aside "
                  "and start again")
    return DamagedFile(f"{path} is damaged ({problem}); {fix}")


def parse_json(data: bytes | str, path, fix: str = "") -> dict:
    """The JSON object `data`, read from `path`; `damaged(path, ..., fix)` if it is not one
    (torn, not UTF-8, or another JSON value)."""
    try:
        value = json.loads(data)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise damaged(path, f"{type(err).__name__}: {err}", fix) from err
    if not isinstance(value, dict):
        raise damaged(path, f"a JSON {type(value).__name__}, not an object", fix)
    return value


def parse_metrics(text: str, path) -> tuple[list[dict], str]:
    """(rows, torn) of a metrics.jsonl text: `torn` is its last line if that line is not whole
    JSON (a run killed, or a disk full, mid-write, or a row being written: a reader sees only
    complete rows), else "". Any other line that is not a JSON object is DamagedFile."""
    lines = [line for line in text.splitlines(keepends=True) if line.strip()]
    rows, torn = [], ""
    for i, line in enumerate(lines):
        try:
            rows.append(parse_json(line, path))
        except DamagedFile:
            if i != len(lines) - 1:
                raise damaged(path, f"line {i + 1} is not a JSON object",
                              "the file was edited: remove that line") from None
            torn = line
    return rows, torn
