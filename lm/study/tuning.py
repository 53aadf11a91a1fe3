"""The study's tuning phase: every optimizer tuned the same way at each tuning size, by
coordinate descent over its declared search space (lm/study/tune.py, lm/study/presets.py), as one
lm.sweep root per size, DIR/tune/<size>.

The threshold a move must beat is the seed noise, measured first: every optimizer's start point
trained with `noise_seeds` more seeds, their variances pooled (one unstable setting's spread
does not set the bar for all: the pooled standard deviation is the root of the mean variance).
Each round trains, for every optimizer at once, the points its search needs next; the searches
are replayed from the finished runs at every round, so an interrupted study resumes where it
stopped. DIR/tune/<size>/tuned.json records each optimizer's best settings, its moves and the
noise; sensitivity.csv the loss against each hyperparameter's value with the others at the
best point.
"""
import csv
import dataclasses
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import matplotlib.ticker  # noqa: E402

from lm.study import runs  # noqa: E402
from lm.study.tune import (  # noqa: E402
    Result,
    SearchSpace,
    coordinate_descent,
    difference_threshold,
    point_id,
    seed_noise,
    sensitivity,
)
from lm.sweep.runner import duration, estimate_seconds  # noqa: E402
from lm.sweep.spec import expand  # noqa: E402
from lm.train import workdir as run_files  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Tuned:
    """One tuning size's outcome."""
    size: str
    results: dict        # optimizer -> tune.Result
    spaces: dict         # optimizer -> SearchSpace
    noise_losses: dict   # optimizer -> its start point's losses over seeds 0 .. noise_seeds
    noise: float         # the pooled standard deviation (NaN if unmeasured)
    threshold: float     # the gain a move must exceed: sqrt(2) x noise (0 if unmeasured)


def space(preset, optimizer: str) -> SearchSpace:
    found = preset.search[optimizer]
    return SearchSpace(dict(found.grids), dict(found.start))


def line_keys(preset, optimizer: str) -> tuple:
    return tuple(preset.search[optimizer].line)


def noise_points(preset, size: str) -> dict:
    """optimizer -> its start point with seeds 0 .. noise_seeds."""
    return {o: [runs.point(preset, size, o, dict(preset.search[o].start), seed=s)
                for s in range(preset.noise_seeds + 1)] for o in preset.optimizers}


def pooled_noise(noise: dict) -> float:
    """The root mean variance over the optimizers whose seeds finished (NaN if none did)."""
    variances = [seed_noise(v) ** 2 for v in noise.values()]
    finite = [v for v in variances if math.isfinite(v)]
    return math.sqrt(sum(finite) / len(finite)) if finite else math.nan


def search_step(preset, size: str, catalog: runs.Catalog):
    """(outcomes, pending points, noise losses): each optimizer's Result where its search has
    ended, and the points the searches need next, from the runs finished so far."""
    points = noise_points(preset, size)
    noise = {o: [catalog.loss(p) for p in ps] for o, ps in points.items()}
    pending = [p for o, ps in points.items() for p, v in zip(ps, noise[o]) if v is None]
    threshold = None if pending else _threshold(noise)
    outcomes = {}
    for optimizer in preset.optimizers:
        known = {}
        for found in catalog.points.values():
            if (found["optimizer"], found["seed"], found["size"]) == (optimizer, 0, size):
                value = catalog.loss(found)
                if value is not None:
                    known[point_id(runs.settings_of(found))] = value
        result = coordinate_descent(space(preset, optimizer), known, threshold=threshold,
                                    max_moves=preset.max_moves,
                                    line_keys=line_keys(preset, optimizer))
        if isinstance(result, Result):
            outcomes[optimizer] = result
        else:
            pending += [runs.point(preset, size, optimizer, p) for p in result]
    return outcomes, list({point_id(p): p for p in pending}.values()), noise


def run_tuning(preset, out: str, args, executor) -> dict | None:
    """size -> Tuned for every tuning size, training what the searches ask for; None while
    runs are pending elsewhere (TPU launch scripts) or on a dry run (after listing the first
    round and an estimate of the rest)."""
    tuned = {}
    for size in preset.tune_sizes:
        root = os.path.join(out, "tune", size)
        planned = planned_points(root)
        while True:
            catalog = runs.Catalog()
            if planned:
                catalog.add(root, runs.sweep(preset, planned))
            outcomes, pending, noise = search_step(preset, size, catalog)
            if not pending:
                break
            planned += [p for p in pending if p not in catalog]
            phase_sweep = runs.sweep(preset, planned)
            wanted = {point_id(p) for p in pending}
            names = {run.name for run, p in zip(expand(phase_sweep), planned)
                     if point_id(p) in wanted}
            if args.dry_run:
                runs.run_phase(phase_sweep, out, f"tune/{size}", args, None, only=names)
                _print_estimate(preset, size, pending)
                break
            _save_planned(root, planned)
            if not runs.run_phase(phase_sweep, out, f"tune/{size}", args, executor,
                                  only=names):
                return None
        if args.dry_run:
            continue
        spaces = {o: space(preset, o) for o in preset.optimizers}
        tuned[size] = Tuned(size, outcomes, spaces, noise, pooled_noise(noise),
                            _threshold(noise))
        write(root, tuned[size])
    return None if args.dry_run else tuned


def write(root: str, tuned: Tuned) -> None:
    """ROOT/tuned.json, ROOT/sensitivity.csv and ROOT/sensitivity.png."""
    record = {"size": tuned.size, "noise": {"losses": tuned.noise_losses, "std": tuned.noise,
                                            "threshold": tuned.threshold},
              "optimizers": {}}
    rows = []
    for optimizer, result in tuned.results.items():
        record["optimizers"][optimizer] = {
            "best": result.best, "loss": result.loss, "converged": result.converged,
            "start": tuned.spaces[optimizer].start, "runs": len(result.losses),
            "moves": [dataclasses.asdict(m) for m in result.moves]}
        rows += [{"optimizer": optimizer, **r}
                 for r in sensitivity(tuned.spaces[optimizer], result)]
    run_files.write_json(os.path.join(root, "tuned.json"), record)
    with open(os.path.join(root, "sensitivity.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, ["optimizer", "key", "value", "loss", "best"])
        writer.writeheader()
        writer.writerows(rows)
    plot_sensitivity(rows, tuned.threshold, os.path.join(root, "sensitivity.png"))


def plot_sensitivity(rows: list[dict], threshold: float, path: str) -> None:
    """One panel per hyperparameter: each optimizer's loss against the value, the others at
    its best point, the bar at the best point one threshold long (the stability plots of Zhao
    et al. 2024)."""
    keys = list(dict.fromkeys(r["key"] for r in rows)) or ["none"]
    optimizers = list(dict.fromkeys(r["optimizer"] for r in rows))
    colors = {o: f"C{i}" for i, o in enumerate(optimizers)}
    columns = min(4, len(keys))
    fig, axes = plt.subplots(math.ceil(len(keys) / columns), columns,
                             figsize=(3.6 * columns, 3.0 * math.ceil(len(keys) / columns)),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys):
        values = [float(r["value"]) for r in rows if r["key"] == key]
        for optimizer in optimizers:
            line = [r for r in rows if r["key"] == key and r["optimizer"] == optimizer]
            if not line:
                continue
            loss = [r["loss"] if math.isfinite(r["loss"]) else math.nan for r in line]
            ax.plot([float(r["value"]) for r in line], loss, marker="o", label=optimizer,
                    color=colors[optimizer])
            for r in line:
                if r["best"]:
                    ax.errorbar([float(r["value"])], [r["loss"]], yerr=threshold, fmt="none",
                                ecolor=colors[optimizer], capsize=3)
        wide = min(values) > 0 and max(values) / min(values) >= 10
        ax.set(xscale="log" if wide else "linear", xlabel=key, ylabel="validation loss")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded labels
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle("Loss against each hyperparameter, the others at the tuned point (bars: the "
                 "noise threshold)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _threshold(noise: dict) -> float:
    sigma = pooled_noise({o: [math.inf if v is None else v for v in values]
                          for o, values in noise.items()})
    return difference_threshold(sigma) if math.isfinite(sigma) else 0.0


def planned_points(root: str) -> list[dict]:
    return run_files.read_json(os.path.join(root, "planned.json")).get("points", [])


def _save_planned(root: str, planned: list[dict]) -> None:
    run_files.write_json(os.path.join(root, "planned.json"), {"points": planned})


def _print_estimate(preset, size: str, first: list[dict]) -> None:
    """The dry run's estimate: the first round, and a bound on each later round (their points
    depend on the first round's losses)."""
    per_move = sum(len(grid) - 1 if key in line_keys(preset, o) else 2
                   for o in preset.optimizers for key, grid in preset.search[o].grids.items())
    configs = [r.config for r in expand(runs.sweep(preset, first))]
    seconds = sum(estimate_seconds(c) for c in configs)
    per_run = seconds / len(configs)
    print(f"tune/{size}: {len(first)} runs in the first round, ~{duration(seconds)} in one "
          f"process; each further round (one move of each optimizer, at most "
          f"{preset.max_moves}) trains at most {per_move} runs, "
          f"~{duration(per_move * per_run)}")
