"""The `cbs` preset: critical batch size as Zhang et al. 2024 ("How Does Critical Batch Size
Scale in Pre-training?", arXiv 2410.21676, Sec. 3) measure it.

One sweep, DIR/cbs: every model size x batch size x lr at a constant lr (after a short warmup)
with exponential weight averaging of the parameters (optimizer.weight_average_decay), every run
of a size on the same tokens (so small batches take many steps), validated `evals` times on the
averaged weights. Per size the target is fixed: the highest of the batch sizes' best final
losses, a loss every batch size reaches at its best lr. The steps to it (interpolated between
validations) at the best lr of each batch size give S(B) = a + b/B, B* = 0.2 b/a (20% over
linear scaling), and B* against N and against D* (scaling/critical_batch.py via scaling.laws).
"""
import math
import os

import numpy as np

from lm.study import runs
from lm.sweep.runner import duration, estimate_seconds
from lm.sweep.spec import expand
from scaling import critical_batch, laws
from scaling.runs import load_runs
from scaling.table import Table


def points(preset) -> list[dict]:
    """size x batch size x lr, each run on tokens_per_param x N tokens."""
    found = []
    for size in preset.sizes:
        tokens = preset.tokens_per_param * runs.non_embedding_params(preset, size)
        for batch in preset.batch_sizes:
            steps = max(1, round(tokens / (batch * preset.run.data.seq_len)))
            found += [{"size": size, "batch_size": batch, "optimizer": preset.optimizers[0],
                       "lr": lr, "seed": 0, "steps": steps} for lr in preset.lrs]
    return found


def steps_to_target(preset, catalog: runs.Catalog) -> list[dict]:
    """Rows (size, N, batch, batch_tokens, lr, target, steps) at each size's fixed target, the
    best lr of each batch size (fewest steps)."""
    curves = {}
    for key, found in catalog.points.items():
        if catalog.loss(found) is None or not math.isfinite(catalog.loss(found)):
            continue
        table = load_runs([catalog.workdirs[key]])
        curves[key] = (found, table.numeric("params_non_embedding")[0],
                       table["history"][0].curve(f"eval/{preset.prose}/loss"))
    rows = []
    for size in preset.sizes:
        at = [c for c in curves.values() if c[0]["size"] == size]
        best_final = {}
        for found, _, (_, loss) in at:
            b = found["batch_size"]
            best_final[b] = min(best_final.get(b, math.inf), float(np.min(loss)))
        if not best_final:
            continue
        target = max(best_final.values())
        for batch in sorted(best_final):
            reached = [(critical_batch.steps_to_target(*curve, target, window=1), found, n)
                       for found, n, curve in at if found["batch_size"] == batch]
            reached = [r for r in reached if math.isfinite(r[0])]
            if reached:
                steps, found, n = min(reached, key=lambda r: r[0])
                rows.append({"size": size, "params_non_embedding": n, "batch": batch,
                             "batch_tokens": batch * preset.run.data.seq_len,
                             "lr": found["lr"], "target": target, "steps": steps})
    return rows


def run(preset, out: str, args, executor, claim_out, context: dict) -> int:
    """Trains the sweep (or lists it), then fits and writes DIR/report.md."""
    sweep = runs.sweep(preset, points(preset))
    configs = [r.config for r in expand(sweep)]  # every check before anything trains
    if args.dry_run:
        runs.run_phase(sweep, out, "cbs", args, executor)
        seconds = sum(estimate_seconds(c) for c in configs)
        print(f"cbs: {len(configs)} runs, ~{duration(seconds)} in one process")
        return 0
    claim_out(out, args.preset, preset)
    if not runs.run_phase(sweep, out, "cbs", args, executor):
        return 0
    catalog = runs.Catalog()
    catalog.add(os.path.join(out, "cbs"), sweep)
    rows = steps_to_target(preset, catalog)
    fit_dir = os.path.join(out, "fits", "cbs")
    lines = ["# Critical batch size (Zhang et al. 2024)", "",
             f"- command: `{context['command']}` on {context['machine']}",
             f"- {len(configs)} runs: constant lr after a "
             f"{preset.run.schedule.warmup_fraction:.0%} warmup, weight averaging with decay "
             f"{preset.run.optimizer.weight_average_decay}, {preset.tokens_per_param:g} tokens "
             "per non-embedding parameter for every batch size; losses of the averaged weights",
             f"- training corpus {catalog.corpus(preset.prose)}",
             "", "| size | batch (sequences) | best lr | target loss | steps to target |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['size']} | {r['batch']} | {r['lr']:g} | {r['target']:.4f} | "
              f"{r['steps']:.0f} |" for r in rows]
    try:
        table = Table({k: [r[k] for r in rows] for k in rows[0]} if rows else {})
        fitted = laws.cbs(table, "batch_tokens", "steps", options=laws.FitOptions(
            bootstrap=preset.bootstrap, holdout_factor=0, plot_dir=fit_dir))
        laws.write(fitted, fit_dir, {"source": "cbs/", "rows": len(rows)})
        record = laws.record(fitted)
        lines += ["", "## Fit (batch sizes in tokens)", ""]
        for title, params in record.items():
            if isinstance(params, dict) and all(isinstance(v, dict) and "value" in v
                                                for v in params.values()):
                lines += [f"{title}:", ""] + [
                    f"- {k}: {v['value']:.4g} [{v['low']:.4g}, {v['high']:.4g}]"
                    for k, v in params.items()] + [""]
        warned = [f"- **warning**: {w}" for w in record.get("warnings", [])]
        lines += warned + ([""] if warned else [])
        lines.append("![critical batch](fits/cbs/critical_batch.png)")
    except (ValueError, IndexError) as err:
        lines += ["", f"The fit failed: {err}"]
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"report: {path}")
    return 0
