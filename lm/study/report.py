"""DIR/report.md: the study's tables and plots (lm/study/phases.py runs the training phases,
lm/study/fits.py the fits, each into DIR/fits/<name>; the report lists each fit's equivalent
`python -m scaling.fit` command).

Fits:
- compute_<optimizer>: L(C) = E + A C^-alpha on the frontier of that optimizer's learning curves
  (best lr per size), the runs within 2x of the largest compute held out and predicted;
- adamw_data_law: Chinchilla L(N, D) on AdamW's final losses at every size and data budget,
  which gives each optimizer's effective-data speedup (scaling/speedup.py, Wen et al. 2025);
- loss_to_loss_train_to_train: code-trained against prose-trained AdamW models paired by size
  and tokens; loss_to_loss_train_to_test: prose-trained models' code loss against their prose
  loss (Brandfonbrener et al. 2024), every validation point of the learning curves, held out
  within 2x of the largest compute.
Steps to target compare each optimizer's validation curve with AdamW's final loss (the SOAP
paper's iteration count), and the measured step times turn that into wall-clock time.
"""
import csv
import datetime
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402

from lm.study import fits  # noqa: E402
from lm.study.fits import BASELINE  # noqa: E402
from lm.sweep.spec import format_value  # noqa: E402
from lm.train.metrics_log import read_metrics  # noqa: E402
from scaling import chinchilla, laws, speedup  # noqa: E402
from scaling.runs import curve_points, load_runs  # noqa: E402


def write(out: str, preset, grid, followup, *, command: str, train_seconds: float,
          machine: str) -> str:
    """Fits, plots and DIR/report.md from the finished runs of both phases; returns its path.
    `train_seconds`: how long this invocation spent before the fits."""
    fits_start = time.perf_counter()
    runs = fits.finished_runs(out, preset, grid, followup)
    sizes = [s for s in preset.sizes if (BASELINE, s) in runs["best"]]
    fitted, commands, problems = fits.run_fits(out, fits.fit_specs(runs, preset, sizes),
                                               preset.bootstrap)
    records = {name: laws.record(f) for name, f in fitted.items()}
    speedups = _speedups(runs, preset, sizes, fitted.get("adamw_data_law"))
    steps = _steps_to_target(runs, preset, sizes)
    plots = [_plot_curves(out, runs, preset), _plot_compute(out, runs, preset, records)]
    sections = [
        _header(preset, command, (train_seconds, time.perf_counter() - fits_start), machine,
                runs),
        _grid_table(out, preset),
        _final_table(runs, preset, sizes),
        _compute_table(preset, records),
        _speedup_table(speedups, records),
        _steps_table(steps),
        _loss_to_loss_table(records),
        "## Plots\n\n" + "\n\n".join(f"![{p}]({p})" for p in plots + [
            f"fits/{n}/loss_to_loss.png" for n in records if n.startswith("loss_to_loss")]),
        "## Commands\n\nThe whole study (finished runs are skipped, fits redone):\n\n"
        f"```\n{command}\n```\n\nEach fit, run from `{out}`:\n\n```\n"
        + "\n".join(commands.values()) + "\n```\n\nEach run's exact config is "
        "`<phase>/<run>/config.json`; `prose/results.csv`, `prose/best_lr.csv` and "
        "`followup/results.csv` list every run.",
    ]
    if problems:
        sections.append("## Problems\n\n" + "\n".join(f"- {p}" for p in problems))
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n\n".join(sections) + "\n")
    return path


def _speedups(runs, preset, sizes, adamw_law) -> list[dict]:
    """Effective-data speedup of each optimizer's best run at each size over `adamw_law`, the
    adamw_data_law fit (None if it failed: its problem is reported with the fits)."""
    if adamw_law is None:
        return []
    law = adamw_law.fit
    rows = []
    for optimizer in preset.optimizers:
        for size in sizes:
            if (optimizer, size) not in runs["best"]:
                continue
            run = load_runs([runs["best"][(optimizer, size)]])
            n, d, loss = (run.numeric(k)[0] for k in ("params_non_embedding", "tokens",
                                                     "val_loss"))
            rows.append({"optimizer": optimizer, "size": size, "n": n, "loss": loss,
                         "speedup": speedup.effective_data_speedup(law, n, d, loss)[0]})
    return rows


def _steps_to_target(runs, preset, sizes) -> list[dict]:
    rows = []
    for size in sizes:
        base_dir = runs["best"][(BASELINE, size)]
        base = load_runs([base_dir])
        target, base_steps = base.numeric("val_loss")[0], base.numeric("steps")[0]
        base_time = _step_time(base_dir)
        for optimizer in preset.optimizers:
            if optimizer == BASELINE or (optimizer, size) not in runs["best"]:
                continue
            workdir = runs["best"][(optimizer, size)]
            run = load_runs([workdir])
            curve = run["history"][0].curve(f"eval/{preset.prose}/loss")
            ratio = speedup.steps_to_target_ratio(*curve, target, base_steps)
            time_ratio = _step_time(workdir) / base_time
            rows.append({"size": size, "optimizer": optimizer, "target": target,
                         "steps_ratio": ratio, "time_ratio": time_ratio})
    return rows


def _step_time(workdir: str) -> float:
    """Median logged seconds per train step (the first logged interval holds compilation)."""
    times = [row["time/step_s"] for row in read_metrics(workdir)[1:] if "time/step_s" in row]
    return float(np.median(times)) if times else np.nan


def _header(preset, command, seconds, machine, runs) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(runs["counts"].items()))
    return "\n".join([
        "# Optimizer-comparison scaling study", "",
        f"- command: `{command}`",
        f"- written {datetime.datetime.now().isoformat(timespec='seconds')} on {machine}",
        f"- runs: {counts}; their wall times add up to {runs['wall_s'] / 60:.1f} min; this "
        f"invocation took {sum(seconds) / 60:.1f} min ({seconds[0] / 60:.1f} training, "
        f"{seconds[1] / 60:.1f} fitting)",
        f"- prose corpus `{preset.prose}`, code corpus `{preset.code}`; every run "
        f"{preset.steps} steps of {preset.run.train.batch_size} x {preset.run.data.seq_len} "
        f"tokens ({preset.run.data.tokenizer} tokenizer), cosine schedule, 10% warmup; AdamW "
        f"also at {', '.join(f'{m:g}x' for m in preset.data_multipliers)} the steps",
        f"- losses are nats per token on the fixed validation windows "
        f"({preset.run.data.eval_batches} x {preset.run.data.eval_batch_size} sequences per "
        "corpus); intervals are 95% bootstrap percentiles"])


def _read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _grid_table(out, preset) -> str:
    rows = _read_csv(os.path.join(out, "prose", "results.csv"))
    best = {(r["size"], r["optimizer"]): r for r in
            _read_csv(os.path.join(out, "prose", "best_lr.csv"))}
    lines = ["## Learning-rate grids (prose validation loss; best in bold)", "",
             "| size | optimizer | lr: validation loss |", "| --- | --- | --- |"]
    for size in preset.sizes:
        for optimizer in preset.optimizers:
            cells = []
            for r in sorted((r for r in rows if r["size"] == size
                             and r["optimizer"] == optimizer), key=lambda r: float(r["lr"])):
                value = (f"{float(r['val_loss']):.4f}" if r["status"] == "finished"
                         else r["status"])
                cell = f"{format_value(float(r['lr']))}: {value}"
                chosen = best.get((size, optimizer), {})
                cells.append(f"**{cell}**" if chosen.get("run") == r["name"] else cell)
            edge = best.get((size, optimizer), {}).get("edge")
            note = f" (best at the {edge} edge)" if edge else ""
            lines.append(f"| {size} | {optimizer} | {', '.join(cells)}{note} |")
    return "\n".join(lines)


def _final_table(runs, preset, sizes) -> str:
    lines = ["## Final losses at the best lr", "",
             f"| size | N (non-embedding) | optimizer | {preset.prose} loss | vs AdamW | "
             f"{preset.code} loss | {preset.prose} bpb | {preset.code} bpb |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for size in sizes:
        base = load_runs([runs["best"][(BASELINE, size)]]).numeric("val_loss")[0]
        for optimizer in preset.optimizers:
            if (optimizer, size) not in runs["best"]:
                lines.append(f"| {size} | | {optimizer} | no finished run | | | | |")
                continue
            workdir = runs["best"][(optimizer, size)]
            t = load_runs([workdir])
            last = read_metrics(workdir)[-1]
            loss = t.numeric("val_loss")[0]
            lines.append(
                f"| {size} | {int(t.numeric('params_non_embedding')[0]):,} | {optimizer} | "
                f"{loss:.4f} | {loss / base - 1:+.2%} | "
                f"{last.get(f'eval/{preset.code}/loss', np.nan):.4f} | "
                f"{last.get(f'eval/{preset.prose}/bpb', np.nan):.3f} | "
                f"{last.get(f'eval/{preset.code}/bpb', np.nan):.3f} |")
    return "\n".join(lines)


def _estimate(d) -> str:
    return f"{d['value']:.4g} [{d['low']:.4g}, {d['high']:.4g}]"


def _compute_table(preset, fits) -> str:
    lines = ["## Compute laws L(C) = E + A C^-alpha (frontier of the learning curves)", "",
             "| optimizer | E | A | alpha | held-out points: mean / max abs. error, in band |",
             "| --- | --- | --- | --- | --- |"]
    for optimizer in preset.optimizers:
        fit = fits.get(f"compute_{optimizer}")
        if fit is None:
            lines.append(f"| {optimizer} | fit failed (see Problems) | | | |")
            continue
        p, held = fit["parameters"], fit["heldout_summary"]
        lines.append(f"| {optimizer} | {_estimate(p['E'])} | {_estimate(p['A'])} | "
                     f"{_estimate(p['alpha'])} | {_held(held)} |")
    lines.append("\nC counts model FLOPs only (6ND plus attention), the same for every "
                 "optimizer; the steps table below adds the optimizers' own cost.")
    return "\n".join(lines)


def _held(summary) -> str:
    if not summary.get("n"):
        return "none"
    return (f"{summary['mean_abs_relative_error']:.2%} / {summary['max_abs_relative_error']:.2%}"
            f", {summary['covered']} of {summary['n']}")


def _speedup_table(rows, fits) -> str:
    law = fits.get("adamw_data_law", {}).get("parameters", {})
    params = ", ".join(f"{k} {_estimate(law[k])}" for k in chinchilla.PARAMS if k in law)
    lines = ["## Effective-data speedup over AdamW (Wen et al. 2025)", "",
             f"AdamW's L(N, D) = E + A/N^alpha + B/D^beta on its final losses: {params}.",
             "The speedup is the data AdamW would need for the optimizer's final loss at that "
             "size, over the data the optimizer used (AdamW's own row checks the law).", "",
             "| size | optimizer | final loss | speedup |", "| --- | --- | --- | --- |"]
    for r in rows:
        s = r["speedup"]
        value = ("beyond AdamW's law (inf)" if not np.isfinite(s.value)
                 else f"{s.value:.2f}x [{s.low:.2f}, {_bound(s.high)}]")
        lines.append(f"| {r['size']} | {r['optimizer']} | {r['loss']:.4f} | {value} |")
    return "\n".join(lines)


def _bound(value: float) -> str:
    """An interval end: resamples whose AdamW law never reaches the loss give inf (or NaN
    where the percentile falls between two of them)."""
    return f"{value:.2f}" if np.isfinite(value) else "unbounded"


def _steps_table(rows) -> str:
    lines = ["## Steps to AdamW's final loss (SOAP paper, Vyas et al. 2024)", "",
             "| size | optimizer | AdamW's final loss | steps / AdamW's | less compute | "
             "step time / AdamW's | wall-clock / AdamW's |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = r["steps_ratio"]
        reached = np.isfinite(ratio)
        lines.append(
            f"| {r['size']} | {r['optimizer']} | {r['target']:.4f} | "
            + (f"{ratio:.2f} | {1 - ratio:.0%} | " if reached else "not reached | | ")
            + f"{r['time_ratio']:.2f} | "
            + (f"{ratio * r['time_ratio']:.2f} |" if reached else "|"))
    lines.append("\nInterpolated between validation points; before the end of its schedule a "
                 "run's loss is not annealed, so these ratios overstate the steps needed (the "
                 "effective-data speedup compares finished runs). Step times are medians of "
                 "the logged intervals on this machine.")
    return "\n".join(lines)


def _loss_to_loss_table(fits) -> str:
    lines = ["## Loss-to-loss (Brandfonbrener et al. 2024): L_y = K (L_x - E_x)^kappa + E_y",
             "", "| fit | x | y | K | kappa | E_x | E_y | held-out: mean / max abs. error, "
             "in band |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, fit in fits.items():
        if not name.startswith("loss_to_loss"):
            continue
        p = fit["shifted power law"]
        x, y = [k.split("= ", 1)[1] for k in fit if k.startswith("offset law")]
        lines.append(f"| {name.removeprefix('loss_to_loss_')} | {x} | {y} | "
                     f"{_estimate(p['K'])} | {_estimate(p['kappa'])} | {_estimate(p['E_x'])} | "
                     f"{_estimate(p['E_y'])} | {_held(fit['heldout_summary'])} |")
    return "\n".join(lines)


COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _plot_curves(out, runs, preset) -> str:
    """Validation loss against tokens, one panel per optimizer, one line per size."""
    fig, axes = plt.subplots(1, len(preset.optimizers), figsize=(4.2 * len(preset.optimizers),
                                                                 3.8), sharey=True, squeeze=False)
    for ax, optimizer in zip(axes[0], preset.optimizers):
        for size, color in zip(preset.sizes, COLORS):
            if (optimizer, size) not in runs["best"]:
                continue
            t = load_runs([runs["best"][(optimizer, size)]])
            steps, loss = t["history"][0].curve(f"eval/{preset.prose}/loss")
            tokens = steps * t.numeric("batch_tokens")[0]
            ax.plot(tokens, loss, marker="o", markersize=3, color=color,
                    label=f"{size} (lr {format_value(t.numeric('lr')[0])})")
        ax.set(xscale="log", xlabel="tokens", title=optimizer)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{preset.prose} validation loss")
    return _save(fig, out, "curves.png")


def _plot_compute(out, runs, preset, fits) -> str:
    """Every validation point against training FLOPs per optimizer, and its fitted law."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for optimizer, color in zip(preset.optimizers, COLORS):
        dirs = [runs["best"][(optimizer, s)] for s in preset.sizes
                if (optimizer, s) in runs["best"]]
        if not dirs:
            continue
        points = curve_points(load_runs(dirs))  # the points the compute fit saw (--curves)
        flops, loss = points.numeric("flops"), points.numeric("val_loss")
        ax.scatter(flops, loss, s=10, color=color, alpha=0.6)
        fit = fits.get(f"compute_{optimizer}")
        label = optimizer
        if fit:
            p = {k: fit["parameters"][k]["value"] for k in ("E", "A", "alpha")}
            grid = np.geomspace(min(flops), max(flops) * 4, 100)
            ax.plot(grid, p["E"] + p["A"] * grid**-p["alpha"], color=color)
            label += f": E={p['E']:.3g}, alpha={p['alpha']:.3g}"
        ax.plot([], [], color=color, marker="o", label=label)
    ax.set(xscale="log", xlabel="training FLOPs", ylabel=f"{preset.prose} validation loss",
           title="Loss against compute, with each optimizer's frontier law")
    ax.legend(fontsize=8)
    return _save(fig, out, "compute.png")


def _save(fig, out, name) -> str:
    fig.tight_layout()
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
    return name
