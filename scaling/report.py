"""A fit's results on disk: fit.json (every number with its interval) and report.md (the same as
tables, the runs used and held out, the guardrails' warnings, the held-out errors, notes and the
plots)."""
import json
import os

import numpy as np

from scaling.bootstrap import Estimate
from scaling.guardrails import Usage
from scaling.validation import HeldOut, summarize


def to_jsonable(value):
    """Estimates, held-out checks, NumPy scalars and arrays, nested in dicts and lists."""
    if isinstance(value, (Estimate, HeldOut, Usage)):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _number(x: float) -> str:
    return f"{x:.4g}"


def estimates_table(estimates: dict[str, Estimate]) -> str:
    level = next(iter(estimates.values())).level
    lines = [f"| parameter | value | {level:.0%} interval |", "| --- | --- | --- |"]
    lines += [f"| {name} | {_number(e.value)} | [{_number(e.low)}, {_number(e.high)}] |"
              for name, e in estimates.items()]
    return "\n".join(lines)


def heldout_table(heldout: list[HeldOut]) -> str:
    lines = ["| held out | actual | predicted | interval | relative error |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {h.label} | {_number(h.actual)} | {_number(h.predicted.value)} | "
              f"[{_number(h.predicted.low)}, {_number(h.predicted.high)}] | "
              f"{h.relative_error:+.2%} |" for h in heldout]
    summary = summarize(heldout)
    lines.append(f"\nMean |relative error| {summary['mean_abs_relative_error']:.2%}, max "
                 f"{summary['max_abs_relative_error']:.2%}; {summary['covered']} of "
                 f"{summary['n']} actual values inside their intervals.")
    return "\n".join(lines)


def write_report(out_dir: str, *, title: str, inputs: dict, tables: dict[str, dict],
                 heldout: list[HeldOut], plots: list[str], notes: list[str],
                 usage: list[Usage], warnings: list[str]) -> list[str]:
    """Writes fit.json and report.md into `out_dir`; returns their paths. The warnings come
    first in report.md, each a paragraph starting "warning: "."""
    os.makedirs(out_dir, exist_ok=True)
    record = {"title": title, "inputs": inputs, **tables, "heldout": heldout,
              "heldout_summary": summarize(heldout), "usage": usage, "warnings": warnings,
              "plots": [os.path.basename(p) for p in plots], "notes": notes}
    json_path = os.path.join(out_dir, "fit.json")
    with open(json_path, "w") as f:
        json.dump(to_jsonable(record), f, indent=2)
    parts = [f"# {title}", "\n".join(f"- {k}: {v}" for k, v in inputs.items())]
    if warnings:
        parts.append("## Warnings\n\n" + "\n\n".join(f"warning: {w}" for w in warnings))
    parts.append("## Runs used\n\n" + "\n".join(f"- {u.summary()}" for u in usage))
    parts += [f"## {name}\n\n{estimates_table(table)}" for name, table in tables.items()]
    parts.append("## Held-out validation\n\n" + (heldout_table(heldout) if heldout else
                                                 "No held-out predictions."))
    if notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {note}" for note in notes))
    parts += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots]
    md_path = os.path.join(out_dir, "report.md")
    with open(md_path, "w") as f:
        f.write("\n\n".join(parts) + "\n")
    return [json_path, md_path]
