"""DIR/report.md: the study's numbers, each with its noise band and its regime, from the tuning
and final phases (lm/study/phases.py).

- Tuning: each optimizer's start and tuned settings, its moves and the seed noise they beat;
  the sensitivity of the loss to each hyperparameter (DIR/tune/<size>/sensitivity.*).
- Final losses at each size (the lr re-tuned per size), and at the seed sizes the mean over
  seeds and the difference from AdamW with a 95% t interval (Welch).
- Effective-data speedup per budget size from AdamW's L(D) = E + B D^-beta over its budgets
  (scaling/speedup.py, Wen et al. 2025), labelled an extrapolation outside them; its slope
  against N where several sizes have budgets.
- Steps to AdamW's loss from annealed shortened runs (Vyas et al. 2024), and step-time ratios
  timed in isolation after training (lm/study/step_times.py).
- Compute laws and loss-to-loss fits (lm/study/fits.py), resampled and held out run by run.
- Hyperparameter laws (lm/study/hyperparameter_laws.py): the lr optimum per size and budget,
  lr(N) per optimizer and AdamW's lr(N, D) with t intervals, the lr predicted at the sizes not
  tuned and the next size up; DIR/fits/hyperparameters.json.
- What the numbers support, and what they do not.
"""
import datetime
import math
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from lm.study import fits, hyperparameter_laws, runs  # noqa: E402
from lm.study.step_times import step_time_ratios  # noqa: E402
from lm.study.tune import point_id, seed_noise, sensitivity  # noqa: E402
from lm.study.tuning import pooled_noise  # noqa: E402
from lm.sweep.spec import format_value  # noqa: E402
from lm.train import workdir as run_files  # noqa: E402
from scaling import speedup  # noqa: E402
from scaling.runs import curve_points, load_runs  # noqa: E402

BASELINE = "adamw"
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def write(out: str, preset, tuned: dict, roles: dict, catalog: runs.Catalog, *, command: str,
          started: float, machine: str, time_steps: bool = True) -> str:
    """Analysis, fits, plots and DIR/report.md; returns its path. `started`: when this
    invocation began (perf_counter); `time_steps`: time each optimizer's step here (the runs
    trained on this machine)."""
    analysis_start = time.perf_counter()
    best = best_points(preset, tuned, roles, catalog)
    seeds = {(o, s): [catalog.loss(runs.point(preset, s, o, tuned[s].results[o].best, seed=k))
                      for k in range(preset.seeds + 1)]
             for s in preset.seed_sizes for o in preset.optimizers}
    speedups = _speedups(preset, tuned, roles, catalog, best, seeds)
    problems = []
    pairs = {"prose": [], "code": []}
    for p in roles["code"]:
        prose = {k: v for k, v in p.items() if k != "dataset"}
        if catalog.loss(prose) is not None and catalog.loss(p) is not None:
            pairs["prose"].append(catalog.workdir(prose))
            pairs["code"].append(catalog.workdir(p))
    best_dirs = {o: [catalog.workdir(best[(o, s)][0]) for s in preset.sizes
                     if (o, s) in best] for o in preset.optimizers}
    records, commands, fit_problems = fits.run_fits(
        out, fits.fit_specs(preset, best_dirs, pairs), preset.bootstrap,
        processes=min(preset.processes, os.cpu_count() or 1))
    problems += fit_problems
    laws = hyperparameter_laws.analyse(preset, tuned, roles, catalog)
    os.makedirs(os.path.join(out, "fits"), exist_ok=True)
    run_files.write_json(os.path.join(out, "fits", "hyperparameters.json"),
                         hyperparameter_laws.record(laws))
    times = {size: step_time_ratios(
        {o: catalog.configs[point_id(best[(o, size)][0])] for o in preset.optimizers
         if (o, size) in best}, BASELINE) for size in preset.tune_sizes
        if (BASELINE, size) in best and time_steps}
    plots = [_plot_curves(out, preset, catalog, best),
             _plot_compute(out, preset, best_dirs, records)]
    seconds = (analysis_start - started, time.perf_counter() - analysis_start)
    sections = [
        _header(preset, command, seconds, machine, catalog),
        _regime_table(preset, best),
        _tuning_section(preset, tuned),
        _final_table(preset, best, seeds),
        _speedup_section(preset, speedups),
        _anneal_section(preset, tuned, catalog, best),
        _step_time_section(times),
        _compute_table(preset, records),
        _loss_to_loss_table(records),
        hyperparameter_section(preset, laws),
        _claims(preset, best, seeds, speedups, records),
        "## Plots\n\n" + "\n\n".join(f"![{p}]({p})" for p in plots + [
            f"tune/{s}/sensitivity.png" for s in preset.tune_sizes] + [
            f"fits/{n}/loss_to_loss.png" for n in records if n.startswith("loss_to_loss")]),
        "## Commands\n\nThe whole study (finished runs are skipped, the analysis redone):\n\n"
        f"```\n{command}\n```\n\nEach fit, run from `{out}`:\n\n```\n"
        + "\n".join(commands.values()) + "\n```\n\nEach run's exact config is "
        "`<phase>/<run>/config.json`; `tune/<size>/results.csv` and `final/results.csv` list "
        "every run, `tune/<size>/tuned.json` each search.",
    ]
    if problems:
        sections.append("## Problems\n\n" + "\n".join(f"- {p}" for p in problems))
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n\n".join(sections) + "\n")
    return path


def best_points(preset, tuned, roles, catalog) -> dict:
    """(optimizer, size) -> (point, loss, note) of the best 1x run: the tuned point at tuning
    sizes, the best of the lr neighbourhood elsewhere (note: at which edge, if at one)."""
    best = {}
    for size in preset.sizes:
        for o in preset.optimizers:
            if size in tuned:
                p = runs.point(preset, size, o, tuned[size].results[o].best)
                loss = catalog.loss(p)
                if loss is not None and math.isfinite(loss):
                    best[(o, size)] = (p, loss, "tuned")
                continue
            line = [p for p in roles["ladder"] if (p["size"], p["optimizer"]) == (size, o)]
            done = [(p, catalog.loss(p)) for p in line]
            done = [(p, v) for p, v in done if v is not None and math.isfinite(v)]
            if done:
                p, loss = min(done, key=lambda item: item[1])
                i = line.index(p)
                edge = "low" if i == 0 else "high" if i == len(line) - 1 else ""
                best[(o, size)] = (p, loss, f"lr at the {edge} edge" if edge else "")
    return best


def _tokens(config) -> int:
    return config.train.steps * config.train.batch_size * config.data.seq_len


def _speedups(preset, tuned, roles, catalog, best, seeds) -> dict:
    """size -> {"law": (E, B, beta), "budgets": [(tokens, loss)], optimizer -> Speedup}."""
    found = {}
    for size in preset.budget_sizes:
        if (BASELINE, size) not in best:
            continue
        base_point = best[(BASELINE, size)][0]
        budgets = {1.0: (_tokens(catalog.configs[point_id(base_point)]), best[(BASELINE, size)][1])}
        for m in preset.data_multipliers:
            line = [p for p in roles["budgets"]
                    if p["size"] == size and p["steps"] == runs.budget_steps(preset, size, m)]
            done = [(catalog.configs[point_id(p)], catalog.loss(p)) for p in line]
            done = [(c, v) for c, v in done if v is not None and math.isfinite(v)]
            if done:
                config, loss = min(done, key=lambda item: item[1])
                budgets[m] = (_tokens(config), loss)
        if len(budgets) < 3:
            continue
        tokens, losses = map(np.array, zip(*[budgets[m] for m in sorted(budgets)]))
        # Seed noise: measured at this size, else at the nearest size that has seeds. AdamW's
        # budget runs (other lrs and lengths) get the noise pooled over every optimizer's tuned
        # point: 3 seeds of one setting estimate its spread poorly.
        noisy = min(preset.seed_sizes, key=lambda s: abs(math.log(
            runs.non_embedding_params(preset, s) / runs.non_embedding_params(preset, size))))
        sigma = pooled_noise({o: _finite(seeds.get((o, noisy), [])) for o in preset.optimizers})
        entry = {"budgets": sorted(budgets.items()), "sigma": sigma, "noise_size": noisy}
        for o in preset.optimizers:
            values = (_finite(seeds.get((o, size), [])) or
                      _finite([best.get((o, size), (None, None))[1]]))
            if not values:
                continue
            x_sigma = _noise(seeds.get((o, noisy), []))
            entry[o] = speedup.effective_data_speedup(
                tokens, losses, 0.0 if math.isnan(sigma) else sigma, float(tokens[
                    sorted(budgets).index(1.0)]), float(np.mean(values)),
                0.0 if math.isnan(x_sigma) else x_sigma / math.sqrt(len(values)))
            entry["law"] = entry[o].law
        found[size] = entry
    return found


def _noise(values) -> float:
    """The seed standard deviation of the finished runs among `values` (None: unfinished)."""
    return seed_noise(_finite(values))


def _header(preset, command, seconds, machine, catalog) -> str:
    statuses, wall = catalog.summary()
    counts = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    return "\n".join([
        "# Optimizer comparison", "",
        f"- command: `{command}`",
        f"- written {datetime.datetime.now().isoformat(timespec='seconds')} on {machine}",
        f"- runs: {counts}; their wall times add up to {wall / 60:.1f} min; this invocation "
        f"took {sum(seconds) / 60:.1f} min ({seconds[0] / 60:.1f} training, "
        f"{seconds[1] / 60:.1f} analysis, fits and step timing)",
        f"- training corpus {catalog.corpus(preset.prose)}; the pair corpus for the "
        f"loss-to-loss fits {catalog.corpus(preset.code)}; batches of "
        f"{preset.run.train.batch_size} x "
        f"{preset.run.data.seq_len} tokens, {preset.run.data.tokenizer} tokenizer, cosine "
        "schedule annealed to 10% of the peak lr",
        f"- losses are nats per token on fixed validation windows "
        f"({preset.run.data.eval_batches} x {preset.run.data.eval_batch_size} sequences); "
        "intervals are 95%"])


def _regime_table(preset, best) -> str:
    lines = ["## Regime", "",
             "| size | N (non-embedding) | tokens (1x) | tokens per parameter | AdamW loss |",
             "| --- | --- | --- | --- | --- |"]
    for size in preset.sizes:
        n = runs.non_embedding_params(preset, size)
        tokens = runs.steps_at(preset, size) * runs.batch_tokens(preset)
        loss = best.get((BASELINE, size), (None, math.nan))[1]
        lines.append(f"| {size} | {n:,} | {tokens:,} | {tokens / n:.2f} | {loss:.4f} |")
    lines.append("\nChinchilla's compute-optimal ratio is ~20 tokens per parameter (Hoffmann "
                 "et al. 2022); Wen et al. 2025 compare at 1-8x that.")
    return "\n".join(lines)


def _tuning_section(preset, tuned) -> str:
    lines = ["## Tuning: coordinate descent (Wen et al. 2025)", ""]
    for size, t in tuned.items():
        noise = "; ".join(f"{o} {', '.join(f'{v:.4f}' for v in _finite(values))} (std "
                          f"{_noise(values):.4f})" for o, values in t.noise_losses.items())
        lines += [f"At {size}, seed noise at each optimizer's start point over "
                  f"{preset.noise_seeds + 1} seeds: {noise}. Pooled std {t.noise:.4f}: a move "
                  f"must gain more than sqrt(2) x {t.noise:.4f} = {t.threshold:.4f}.", "",
                  "| optimizer | start | tuned (changed in bold) | loss | moves | runs | "
                  "converged |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for o, result in t.results.items():
            start = t.spaces[o].start
            tuned_cells = [f"**{k}={format_value(v)}**" if format_value(v) != format_value(
                start[k]) else f"{k}={format_value(v)}" for k, v in result.best.items()]
            moves = "; ".join(f"{m.key} -> {format_value(m.value)} (-{m.gain:.4f})"
                              for m in result.moves) or "none"
            started = ", ".join(f"{k}={format_value(v)}" for k, v in start.items())
            converged = "yes" if result.converged else "no (max moves)"
            lines.append(f"| {o} | {started} | {', '.join(tuned_cells)} | {result.loss:.4f} | "
                         f"{moves} | {len(result.losses)} | {converged} |")
        lines += ["", "Sensitivity (loss against each hyperparameter, the others at the tuned "
                  f"point; `tune/{size}/sensitivity.csv`):", "",
                  "| optimizer | hyperparameter | value: loss |", "| --- | --- | --- |"]
        for o, result in t.results.items():
            rows = sensitivity(t.spaces[o], result)
            for key in dict.fromkeys(r["key"] for r in rows):
                cells = [f"**{format_value(r['value'])}: {r['loss']:.4f}**" if r["best"]
                         else f"{format_value(r['value'])}: {r['loss']:.4f}"
                         for r in rows if r["key"] == key]
                lines.append(f"| {o} | {key} | {', '.join(cells)} |")
    return "\n".join(lines)


def _final_table(preset, best, seeds) -> str:
    lines = ["## Final losses (1x data, best lr per size)", "",
             f"| size | optimizer | lr | {preset.prose} loss | vs AdamW | seeds: mean +- std | "
             "difference from AdamW [95% interval] |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for size in preset.sizes:
        base = best.get((BASELINE, size), (None, math.nan))[1]
        for o in preset.optimizers:
            if (o, size) not in best:
                lines.append(f"| {size} | {o} | | no finished run | | | |")
                continue
            p, loss, note = best[(o, size)]
            seed_cell = diff_cell = ""
            if (o, size) in seeds:
                values = _finite(seeds[(o, size)])
                seed_cell = (f"{np.mean(values):.4f} +- {_noise(values):.4f} "
                             f"({len(values)} seeds)")
                if o != BASELINE:
                    diff_cell = _difference(values, _finite(seeds[(BASELINE, size)]))
            lr = format_value(p["lr"]) + (f" ({note})" if note not in ("", "tuned") else "")
            lines.append(f"| {size} | {o} | {lr} | {loss:.4f} | {loss / base - 1:+.2%} | "
                         f"{seed_cell} | {diff_cell} |")
    return "\n".join(lines)


def _finite(values) -> list:
    return [v for v in values if v is not None and math.isfinite(v)]


def welch_interval(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): the Welch t interval of a difference of means."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, dof) * math.sqrt(va + vb)
    diff = a.mean() - b.mean()
    return diff, diff - half, diff + half


def _difference(values, base) -> str:
    if len(values) < 2 or len(base) < 2:
        return "too few seeds"
    diff, low, high = welch_interval(values, base)
    verdict = "within noise" if low <= 0 <= high else "beyond noise"
    return f"{diff:+.4f} [{low:+.4f}, {high:+.4f}], {verdict}"


def _speedup_section(preset, speedups) -> str:
    lines = ["## Effective-data speedup over AdamW (Wen et al. 2025)", "",
             "AdamW's final loss against its data, L(D) = E + B D^-beta, fitted per size over "
             "its budgets (lr re-tuned at each); the speedup is the data AdamW would need for the "
             "optimizer's mean final loss over its seeds, over the data it used. Intervals: "
             "parametric bootstrap over the measured seed noise.", ""]
    for size, entry in speedups.items():
        budget_text = ", ".join(f"{m:g}x: {loss:.4f}" for m, (_, loss) in entry["budgets"])
        e, b, beta = entry["law"]
        lines += [f"{size}: AdamW {budget_text}; E {e:.3f}, B {b:.3g}, beta {beta:.3f}; seed "
                  f"std of each budget's loss {entry['sigma']:.4f} (pooled over the optimizers' "
                  f"seeds at {entry['noise_size']}); each optimizer's mean carries its own "
                  "seeds' std / sqrt(seeds).", "",
                  "| optimizer | mean loss | speedup [95%] | AdamW data needed | status |",
                  "| --- | --- | --- | --- | --- |"]
        largest = max(m for m, _ in entry["budgets"])
        for o in preset.optimizers:
            if o not in entry:
                continue
            s = entry[o]
            status = (f"extrapolation beyond AdamW's {largest:g}x" if s.extrapolated
                      and s.needed > entry["budgets"][-1][1][0] else
                      "extrapolation below AdamW's smallest budget" if s.extrapolated
                      else "within AdamW's measured budgets")
            needed = "unreachable" if not math.isfinite(s.needed) else f"{s.needed:,.0f} tokens"
            lines.append(f"| {o} | {_x_loss(s, entry)} | {_speed(s.estimate)} | {needed} | "
                         f"{status} |")
        lines.append("")
    slopes = _slopes(preset, speedups)
    if slopes:
        lines += ["Speedup against model size, log(speedup) = a + s log N:", ""]
        lines += [f"- {o}: s = {est.value:+.3f} [{est.low:+.3f}, {est.high:+.3f}]"
                  for o, est in slopes.items()]
    return "\n".join(lines)


def _x_loss(s, entry) -> str:
    e, b, beta = entry["law"]
    return "-" if not math.isfinite(s.needed) else f"{e + b * s.needed ** -beta:.4f}"


def _speed(est) -> str:
    def bound(v):
        return f"{v:.2f}" if math.isfinite(v) else "unbounded"
    value = f"{est.value:.2f}x" if math.isfinite(est.value) else "beyond AdamW's law"
    return f"{value} [{bound(est.low)}, {bound(est.high)}]"


def _slopes(preset, speedups) -> dict:
    sizes = [s for s in preset.sizes if s in speedups]
    if len(sizes) < 2:
        return {}
    found = {}
    for o in preset.optimizers:
        if o == BASELINE or not all(o in speedups[s] for s in sizes):
            continue
        n = [runs.non_embedding_params(preset, s) for s in sizes]
        values = [speedups[s][o].estimate.value for s in sizes]
        if all(math.isfinite(v) and v > 0 for v in values):
            samples = np.stack([speedups[s][o].samples for s in sizes], axis=1)
            found[o] = speedup.speedup_slope(n, values, samples)
    return found


def _anneal_section(preset, tuned, catalog, best) -> str:
    lines = ["## Steps to AdamW's final loss (annealed runs, Vyas et al. 2024)", "",
             "Each optimizer's tuned point trained again on shorter runs whose schedule anneals "
             "at their own end; the fraction of the steps at which the annealed loss reaches "
             "AdamW's 1x loss is interpolated in log steps between them (seed 0 throughout).",
             "", "| size | optimizer | AdamW's loss | annealed losses by fraction of the steps | "
             "steps / AdamW's |", "| --- | --- | --- | --- | --- |"]
    for size, t in tuned.items():
        if (BASELINE, size) not in best:
            continue
        target = best[(BASELINE, size)][1]
        for o in preset.optimizers:
            if o == BASELINE or (o, size) not in best:
                continue
            fractions, losses = [1.0], [best[(o, size)][1]]
            for f in preset.anneal_fractions:
                loss = catalog.loss(runs.point(preset, size, o, t.results[o].best, multiplier=f))
                if loss is not None and math.isfinite(loss):
                    fractions.append(f)
                    losses.append(loss)
            fraction, note = speedup.annealed_steps_fraction(fractions, losses, target)
            cells = ", ".join(f"{f:g}: {v:.4f}" for f, v in sorted(zip(fractions, losses)))
            value = f"{fraction:.2f}" if math.isfinite(fraction) else note
            lines.append(f"| {size} | {o} | {target:.4f} | {cells} | {value} |")
    return "\n".join(lines)


def _step_time_section(times) -> str:
    if not times:
        return ("## Step time\n\nNot timed: the runs trained elsewhere (--launch=tpu); time "
                "them there with `python -m benchmarks.optimizers`.")
    lines = ["## Step time (timed alone after training; lm/study/step_times.py)", "",
             "| size | optimizer | seconds per step | / AdamW's |", "| --- | --- | --- | --- |"]
    for size, ratios in times.items():
        lines += [f"| {size} | {name} | {s:.4f} | {r:.2f} |" for name, (s, r) in ratios.items()]
    lines.append("\nAdamW timed again last shows this machine's timing noise.")
    return "\n".join(lines)


def _estimate(d) -> str:
    return f"{d['value']:.4g} [{d['low']:.4g}, {d['high']:.4g}]"


def _held(summary) -> str:
    if not summary.get("n"):
        return "none"
    return (f"{summary['mean_abs_relative_error']:.2%} / {summary['max_abs_relative_error']:.2%}"
            f", {summary['covered']} of {summary['n']}")


def _compute_table(preset, records) -> str:
    lines = ["## Compute laws L(C) = E + A C^-alpha (frontier of the learning curves)", "",
             "| optimizer | E | A | alpha | held-out runs' points: mean / max abs. error, in "
             "band |", "| --- | --- | --- | --- | --- |"]
    for optimizer in preset.optimizers:
        fit = records.get(f"compute_{optimizer}")
        if fit is None:
            lines.append(f"| {optimizer} | fit failed (see Problems) | | | |")
            continue
        p = fit["parameters"]
        lines.append(f"| {optimizer} | {_estimate(p['E'])} | {_estimate(p['A'])} | "
                     f"{_estimate(p['alpha'])} | {_held(fit['heldout_summary'])} |")
    lines.append("\nC counts model FLOPs only (6ND plus attention). The bootstrap resamples "
                 "whole runs, and the runs within 2x of the largest compute are held out whole "
                 "(a prediction beyond the fitted runs, not along one run's curve).")
    return "\n".join(lines + _fit_notes(records, "compute_"))


def _fit_notes(records, prefix: str) -> list[str]:
    """The runs each fit used and held out, and its warnings (scaling/guardrails.py:
    degenerate estimates, a hold-out that validates nothing)."""
    lines = []
    for name, fit in records.items():
        if not name.startswith(prefix):
            continue
        for u in fit.get("usage", []):
            held = ", ".join(u["held_out"])
            lines.append(f"- {name}, {u['fit']}: {u['fitted_runs']} runs fitted "
                         f"({u['fitted_points']} points), {u['held_out_runs']} held out"
                         + (f" ({held})" if held else ""))
        lines += [f"- **warning** ({name}): {w}" for w in fit.get("warnings", [])]
    return [""] + lines if lines else []


def _loss_to_loss_table(records) -> str:
    lines = ["## Loss-to-loss (Brandfonbrener et al. 2024): L_y = K (L_x - E_x)^kappa + E_y",
             "", "| fit | x | y | K | kappa | E_x | E_y | held-out runs: mean / max abs. error, "
             "in band |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, fit in records.items():
        if not name.startswith("loss_to_loss"):
            continue
        p = fit["shifted power law"]
        x, y = [k.split("= ", 1)[1] for k in fit if k.startswith("offset law")]
        lines.append(f"| {name.removeprefix('loss_to_loss_')} | {x} | {y} | "
                     f"{_estimate(p['K'])} | {_estimate(p['kappa'])} | {_estimate(p['E_x'])} | "
                     f"{_estimate(p['E_y'])} | {_held(fit['heldout_summary'])} |")
    lines.append("\nAdamW runs at equal settings per size on each corpus; every validation "
                 "point of their curves, resampled run by run, the largest size held out.")
    return "\n".join(lines + _fit_notes(records, "loss_to_loss"))


def hyperparameter_section(preset, laws: hyperparameter_laws.Laws) -> str:
    """The lr laws with their intervals, the per-size optima they come from, the lr predicted
    at the sizes not tuned and the next size up, and the other tuned hyperparameters' laws."""
    lines = ["## Hyperparameter laws (the tuned lr against N and D)", "",
             "Each line of lrs tried with the other settings fixed (coordinate descent at the "
             "tuning sizes, the lr re-tuning at the other sizes and at AdamW's data budgets) "
             "gives an optimum: its lowest loss, refined to the vertex of the parabola in log lr "
             "through it and its two neighbours. An optimum at the edge of its line is only a "
             "bound and is left out of the fits. log lr = log a + b log N (+ c log D) by least "
             "squares; intervals are 95% t intervals with n - p degrees of freedom "
             "(scaling/hyperparameters.py), predictions' the t prediction interval of one more "
             "size's optimum. Every number is in `fits/hyperparameters.json`.", "",
             "| optimizer | law | a [95%] | b, exponent of N [95%] | c, exponent of D [95%] | "
             "residual std of log lr | optima fitted | left out: bounds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for optimizer, found in laws.lr.items():
        for fit in found:
            fitted = ", ".join(_line_label(line) for line in fit.fitted) or "none"
            bounds = ", ".join(f"{_line_label(line)} ({line.optimum.status})"
                               for line in fit.bounds) or "none"
            if fit.law is None:
                lines.append(f"| {optimizer} | {fit.name} | not fitted: {fit.problem} | | | | "
                             f"{fitted} | {bounds} |")
                continue
            d = fit.law.exponents.get("D", "")
            lines.append(f"| {optimizer} | {fit.name} | {fit.law.coefficient} | "
                         f"{fit.law.exponents['N']} | {d} | {fit.law.residual_std:.3f} | "
                         f"{fitted} | {bounds} |")
    one_x = {line.tokens for line in laws.lines if line.multiplier == 1.0}
    lines += ["", "At 1x every size trains on the same tokens, so lr(N) holds D fixed." if
              len(one_x) <= 1 else "At 1x the data grows with N, so lr(N)'s exponent carries "
              "the data's effect as well as the size's; lr(N, D) separates them where AdamW "
              "has budgets.", "", _optima_table(laws), "", _prediction_table(laws), "",
              _other_hyperparameters(preset, laws)]
    return "\n".join(lines)


def _line_label(line) -> str:
    return line.size if line.multiplier == 1.0 else f"{line.size} at {line.multiplier:g}x"


def _optima_table(laws) -> str:
    lines = ["Per-size optima:", "",
             "| optimizer | size | N | tokens | from | lrs tried: loss | optimum | status |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for line in laws.lines:
        tried = ", ".join(f"{format_value(lr)}: {loss:.4f}" for lr, loss in line.tried)
        found = line.optimum
        optimum, status = ("-", "every run diverged or failed") if found is None else (
            f"{found.value:.3g}", {"vertex": f"vertex (best on the grid {found.grid_value:g})",
                                   "grid": "the grid's best (a neighbour diverged)",
                                   "low edge": f"<= {found.value:g}: at the low edge",
                                   "high edge": f">= {found.value:g}: at the high edge",
                                   "single value": "one lr only"}[found.status])
        lines.append(f"| {line.optimizer} | {_line_label(line)} | {line.n:,} | "
                     f"{line.tokens:,} | {line.source} | {tried} | {optimum} | {status} |")
    return "\n".join(lines)


def _prediction_table(laws) -> str:
    if not laws.predictions:
        return "No lr law was fitted, so no lr is predicted."
    lines = ["Predicted lr at 1x data (sizes not tuned and the next size up):", "",
             "| optimizer | law | size | N | tokens | lr [95% prediction interval] | nearest "
             "grid lr | measured optimum |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in laws.predictions:
        measured = row["measured"]
        measured = "not run" if measured is None else (
            f"{measured.value:.3g}" + ("" if measured.bracketed else f" ({measured.status})"))
        size = row["size"] + (" (extrapolated)" if row["extrapolated"] else "")
        lines.append(f"| {row['optimizer']} | {row['law']} | {size} | {row['n']:,} | "
                     f"{row['tokens']:,} | {row['lr']} | {format_value(row['grid_lr'])} | "
                     f"{measured} |")
    return "\n".join(lines)


def _other_hyperparameters(preset, laws) -> str:
    if len(preset.tune_sizes) < 3:
        return (f"The other hyperparameters were searched at {len(preset.tune_sizes)} tuning "
                "size(s) only; a law with an interval needs 3 or more (their tuned values: the "
                "tuning table above, `tune/<size>/tuned.json`).")
    lines = ["The other tuned hyperparameters (grid values) against N:", "",
             "| optimizer | hyperparameter | tuned value by size | law [95%] |",
             "| --- | --- | --- | --- |"]
    for optimizer, keys in laws.others.items():
        for key, (values, fit) in keys.items():
            cells = ", ".join(f"{s}: {format_value(v)}" for s, v in values.items())
            law = (f"not fitted: {fit.problem}" if fit.law is None else
                   f"{fit.law.formula(key)}, exponent {fit.law.exponents['N']}")
            lines.append(f"| {optimizer} | {key} | {cells} | {law} |")
    return "\n".join(lines)


def _claims(preset, best, seeds, speedups, records) -> str:
    lines = ["## What these numbers support", ""]
    ratios = [runs.steps_at(preset, s) * runs.batch_tokens(preset)
              / runs.non_embedding_params(preset, s) for s in preset.sizes]
    if max(ratios) / min(ratios) > 1.5:
        lines.append(f"- Tokens per parameter fall from {max(ratios):.1f} to {min(ratios):.2f} "
                     "across the sizes (every size sees the same tokens), so a trend of any "
                     "speedup with size mixes model size and data; it is not a claim here.")
    else:
        lines.append(f"- Every size trains on {np.mean(ratios):.1f} tokens per parameter, so "
                     "trends with size compare like with like.")
    for (o, size), values in seeds.items():
        if o == BASELINE:
            continue
        values, base = _finite(values), _finite(seeds.get((BASELINE, size), []))
        if len(values) >= 2 and len(base) >= 2:
            diff, low, high = welch_interval(values, base)
            verdict = ("is within seed noise of AdamW's" if low <= 0 <= high else
                       "is lower than AdamW's beyond seed noise" if high < 0 else
                       "is higher than AdamW's beyond seed noise")
            lines.append(f"- At {size}, {o}'s mean loss over {len(values)} seeds {verdict} "
                         f"({diff:+.4f} [{low:+.4f}, {high:+.4f}]).")
    for size, entry in speedups.items():
        for o in preset.optimizers:
            if o == BASELINE or o not in entry:
                continue
            s = entry[o]
            budgets = ", ".join(f"{m:g}x" for m, _ in entry["budgets"])
            kind = ("an extrapolation outside" if s.extrapolated
                    else "measured (interpolated) within")
            lines.append(f"- {o}'s effective-data speedup at {size}, {_speed(s.estimate)}, is "
                         f"{kind} AdamW's budgets ({budgets}).")
    warned = sorted(name for name, fit in records.items() if fit.get("warnings"))
    if warned:
        lines.append(f"- {len(warned)} of {len(records)} scaling-law fits carry warnings "
                     f"({', '.join(warned)}; listed under their tables): parameters these runs "
                     "do not pin down, or a hold-out that validated nothing. Their numbers are "
                     "not claims.")
    return "\n".join(lines)


def _plot_curves(out, preset, catalog, best) -> str:
    """Validation loss against tokens, one panel per optimizer, one line per size."""
    fig, axes = plt.subplots(1, len(preset.optimizers), figsize=(4.2 * len(preset.optimizers),
                                                                 3.8), sharey=True, squeeze=False)
    for ax, optimizer in zip(axes[0], preset.optimizers):
        for size, color in zip(preset.sizes, COLORS):
            if (optimizer, size) not in best:
                continue
            t = load_runs([catalog.workdir(best[(optimizer, size)][0])])
            steps, loss = t["history"][0].curve(f"eval/{preset.prose}/loss")
            ax.plot(steps * t.numeric("batch_tokens")[0], loss, marker="o", markersize=3,
                    color=color, label=f"{size} (lr {format_value(t.numeric('lr')[0])})")
        ax.set(xscale="log", xlabel="tokens", title=optimizer)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"{preset.prose} validation loss")
    return _save(fig, out, "curves.png")


def _plot_compute(out, preset, best_dirs, records) -> str:
    """Every validation point against training FLOPs per optimizer, and its fitted law."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for optimizer, color in zip(preset.optimizers, COLORS):
        if not best_dirs.get(optimizer):
            continue
        points = curve_points(load_runs(best_dirs[optimizer]))
        flops, loss = points.numeric("flops"), points.numeric("val_loss")
        ax.scatter(flops, loss, s=10, color=color, alpha=0.6)
        fit = records.get(f"compute_{optimizer}")
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

