"""The study's hyperparameter laws (scaling/hyperparameters.py over its runs): the lr optimum at
every size and data budget the study tried a line of lrs at, lr(N) = a N^b per optimizer (and
lr(N, D) = a N^b D^c for AdamW where it has budgets), each other tuned hyperparameter against
N, the lr predicted at the sizes not tuned and the next size up, and the lr the final phase
proposes at a size not tuned (`proposed_lr`).

The lines of lrs (the other hyperparameters fixed) come from
- the tuning sizes: the lrs coordinate descent tried at the tuned point (its sensitivity rows);
- `ladder`: the lrs the final phase re-tuned over at each size not tuned;
- `budgets`: AdamW's lrs at each multiple of the steps at the budget sizes.
Each line's optimum is its lowest loss refined to the parabola's vertex in log lr; an optimum
at a line's edge is only a bound and is left out of the fits (the report names it). The other
hyperparameters were searched at the tuning sizes only: their tuned grid values are fitted
where 3 or more tuning sizes give them. DIR/fits/hyperparameters.json holds it all (`record`).
"""
import dataclasses
import math

from lm.model import ladder
from lm.study import runs, tuning
from lm.study.tune import sensitivity
from scaling.hyperparameters import Optimum, PowerLaw, fit_hyperparameter_law, grid_optimum
from scaling.objective import fit_power_law

LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class LrLine:
    """The lrs tried at one (optimizer, size, data budget), the other settings fixed."""
    optimizer: str
    size: str
    n: int                   # non-embedding parameters
    tokens: int              # training tokens
    multiplier: float        # of the size's 1x steps
    source: str              # "tuned", "ladder" or "budgets"
    tried: tuple             # ((lr, loss), ...) in lr order; inf: diverged or failed
    optimum: Optimum | None  # None: every run diverged or failed


@dataclasses.dataclass(frozen=True)
class LawFit:
    """One law over the bracketed optima of `lines`, or the reason there is none."""
    name: str             # e.g. "lr(N)", "lr(N, D)", "b2(N)"
    law: PowerLaw | None
    problem: str          # why it was not fitted ("" when it was)
    fitted: tuple         # the LrLines (or sizes) fitted
    bounds: tuple         # the LrLines left out: their optimum at an edge (a bound)


@dataclasses.dataclass(frozen=True)
class Laws:
    lines: list           # LrLine of every line of lrs, by optimizer, N, tokens
    lr: dict              # optimizer -> [LawFit lr(N), LawFit lr(N, D) where D varies]
    others: dict          # optimizer -> {key: (size -> tuned value, LawFit)}
    predictions: list     # dicts: optimizer, law, size, n, tokens, Estimate, grid lr, measured


def nearest_grid_value(grid, value: float) -> float:
    """The value of `grid` (positive) nearest `value` in log."""
    return min(grid, key=lambda v: abs(math.log(v / value)))


def tuned_lr_line(preset, tuned_size, optimizer: str) -> list[tuple]:
    """(lr, loss) of every lr coordinate descent tried at the tuned point of `optimizer` at one
    tuning size (a tuning.Tuned): its sensitivity rows of the lr (none for a dry run's
    placeholder)."""
    rows = sensitivity(tuning.space(preset, optimizer), tuned_size.results[optimizer])
    return [(r["value"], r["loss"]) for r in rows if r["key"] == "lr"]


def proposed_lr(preset, tuned: dict, optimizer: str, size: str) -> tuple[float, str] | None:
    """(lr, law) at `size` from lr(N) = a N^b through the tuning sizes' lr optima (least
    squares in log with more than two), `law` its text for the launch scripts; None with fewer
    than 2 tuning sizes. Each tuning size's optimum is its lr line's (`grid_optimum`: the
    vertex between the grid's lrs where bracketed), else its tuned lr: two sizes' grid lrs,
    ~3x apart, would give the slope mostly by quantization."""
    if len(tuned) < 2:
        return None
    optima, labels = {}, {}
    for s, t in tuned.items():
        tried = tuned_lr_line(preset, t, optimizer)
        found = grid_optimum(*zip(*tried)) if any(math.isfinite(v) for _, v in tried) else None
        optima[s] = found.value if found else t.results[optimizer].best["lr"]
        labels[s] = "tuned" if found is None else found.status
    n = {s: runs.non_embedding_params(preset, s) for s in [*tuned, size]}
    a, b = fit_power_law([n[s] for s in tuned], [optima[s] for s in tuned])
    sources = ", ".join(f"{s} (N={n[s]:,}): {optima[s]:.3g} ({labels[s]})" for s in tuned)
    lr = a * n[size] ** b
    return lr, (f"lr(N) = {a:.4g} N^{b:.3f} through the tuning sizes' lr optima {sources}: "
                f"{lr:.3g} at {size} (N={n[size]:,})")


def analyse(preset, tuned: dict, roles: dict, catalog: runs.Catalog) -> Laws:
    """The laws of the study's finished runs (module docstring)."""
    lines = lr_lines(preset, tuned, roles, catalog)
    lr = {o: lr_laws([line for line in lines if line.optimizer == o]) for o in preset.optimizers}
    others = {o: tuned_value_laws(preset, tuned, o) for o in preset.optimizers}
    return Laws(lines, lr, others, lr_predictions(preset, lines, lr))


def lr_lines(preset, tuned: dict, roles: dict, catalog: runs.Catalog) -> list[LrLine]:
    """Every line of lrs with a finished run: the tuning sizes' first, then the ladder's and
    the budgets' (a line both have is taken once)."""
    found = {}
    for size, t in tuned.items():
        for o in preset.optimizers:
            _add_line(found, preset, o, size, runs.steps_at(preset, size), "tuned",
                      tuned_lr_line(preset, t, o))
    for role in ("ladder", "budgets"):
        groups = {}
        for p in roles[role]:
            loss = catalog.loss(p)
            if loss is not None:
                groups.setdefault((p["optimizer"], p["size"], p["steps"]), []).append(
                    (p["lr"], loss))
        for (o, size, steps), tried in groups.items():
            _add_line(found, preset, o, size, steps, role, tried)
    order = {o: i for i, o in enumerate(preset.optimizers)}
    return sorted(found.values(), key=lambda line: (order[line.optimizer], line.n, line.tokens))


def _add_line(found: dict, preset, optimizer, size, steps, source, tried) -> None:
    if not tried or (optimizer, size, steps) in found:
        return
    tried = tuple(sorted((float(lr), float(loss)) for lr, loss in tried))
    try:
        optimum = grid_optimum(*zip(*tried))
    except ValueError:  # every run of the line diverged or failed
        optimum = None
    found[(optimizer, size, steps)] = LrLine(
        optimizer, size, runs.non_embedding_params(preset, size),
        steps * runs.batch_tokens(preset), steps / runs.steps_at(preset, size), source, tried,
        optimum)


def lr_laws(lines: list[LrLine]) -> list[LawFit]:
    """lr(N) over one optimizer's 1x lines, and lr(N, D) over all of them where some line is
    at another data budget."""
    usable = [line for line in lines if line.optimum is not None]
    fits = [_fit_lines("lr(N)", [line for line in usable if line.multiplier == 1.0], ("N",))]
    if any(line.multiplier != 1.0 for line in usable):
        fits.append(_fit_lines("lr(N, D)", usable, ("N", "D")))
    return fits


def _fit_lines(name: str, lines: list[LrLine], predictors: tuple) -> LawFit:
    fitted = tuple(line for line in lines if line.optimum.bracketed)
    bounds = tuple(line for line in lines if not line.optimum.bracketed)
    columns = {"N": [line.n for line in fitted], "D": [line.tokens for line in fitted]}
    try:
        law = fit_hyperparameter_law([line.optimum.value for line in fitted],
                            {k: columns[k] for k in predictors}, LEVEL, law=name)
    except ValueError as err:
        edges = (f"; {len(bounds)} optima at the edge of their line of lrs are left out (more lrs"
                 " tried there would bracket them)" if bounds else "")
        return LawFit(name, None, f"{err}{edges}", fitted, bounds)
    return LawFit(name, law, "", fitted, bounds)


def tuned_value_laws(preset, tuned: dict, optimizer: str) -> dict:
    """key -> (tuning size -> tuned value, its LawFit against N) for every searched key but
    the lr (grid values: a law needs 3 or more tuning sizes and positive values)."""
    found = {}
    keys = dict.fromkeys(k for t in tuned.values() for k in t.results[optimizer].best)
    for key in (k for k in keys if k != "lr"):
        values = {s: t.results[optimizer].best[key] for s, t in tuned.items()
                  if key in t.results[optimizer].best}
        name = f"{key}(N)"
        if any(v <= 0 for v in values.values()):
            found[key] = (values, LawFit(name, None, f"{name}: a tuned value is "
                                         f"{min(values.values())}; a power law needs positive "
                                         "values", (), ()))
            continue
        try:
            law = fit_hyperparameter_law(list(values.values()),
                                {"N": [runs.non_embedding_params(preset, s) for s in values]},
                                LEVEL, law=name)
            found[key] = (values, LawFit(name, law, "", tuple(values), ()))
        except ValueError as err:
            found[key] = (values, LawFit(name, None, str(err), tuple(values), ()))
    return found


def next_size_up(preset) -> str | None:
    """The ladder's smallest size above the preset's largest (lm/model/ladder.py), if any."""
    largest = max(runs.non_embedding_params(preset, s) for s in preset.sizes)
    n = {s: runs.non_embedding_params(preset, s) for s in ladder.SIZES}
    return min((s for s in n if n[s] > largest), key=n.get, default=None)


def lr_predictions(preset, lines: list[LrLine], lr: dict) -> list[dict]:
    """Each fitted law's lr at 1x data at every size not tuned and the next size up, with its
    prediction interval, the nearest grid lr and the optimum measured there (if any)."""
    up = next_size_up(preset)
    sizes = [s for s in preset.sizes if s not in preset.tune_sizes] + ([up] if up else [])
    rows = []
    for optimizer, fits in lr.items():
        grid = preset.search[optimizer].grids.lr
        for fit in (f for f in fits if f.law is not None):
            fitted_n = [line.n for line in fit.fitted]
            for size in sizes:
                n = runs.non_embedding_params(preset, size)
                tokens = runs.steps_at(preset, size) * runs.batch_tokens(preset)
                x = {"N": n, "D": tokens}
                estimate = fit.law.predict(**{k: x[k] for k in fit.law.names})
                measured = next((line.optimum for line in lines if line.optimizer == optimizer
                                 and line.size == size and line.multiplier == 1.0
                                 and line.optimum is not None), None)
                rows.append(dict(optimizer=optimizer, law=fit.name, size=size, n=n,
                                 tokens=tokens, lr=estimate,
                                 grid_lr=nearest_grid_value(grid, estimate.value),
                                 extrapolated=not min(fitted_n) <= n <= max(fitted_n),
                                 measured=measured))
    return rows


def record(laws: Laws) -> dict:
    """Plain data for DIR/fits/hyperparameters.json (a diverged run's loss is null)."""
    def loss(value):
        return value if math.isfinite(value) else None

    def line_record(line: LrLine) -> dict:
        return {**{k: getattr(line, k) for k in ("optimizer", "size", "n", "tokens",
                                                 "multiplier", "source")},
                "tried": [{"lr": lr, "loss": loss(v)} for lr, v in line.tried],
                "optimum": None if line.optimum is None else dataclasses.asdict(line.optimum)}

    def fit_record(fit: LawFit) -> dict:
        found = {"law": fit.name, "problem": fit.problem,
                 "fitted": [f"{x.size}@{x.multiplier:g}x" if isinstance(x, LrLine) else x
                            for x in fit.fitted],
                 "bounds": [f"{x.size}@{x.multiplier:g}x: {x.optimum.status}"
                            for x in fit.bounds]}
        if fit.law is not None:
            found.update(formula=fit.law.formula(fit.name.split("(")[0]),
                         coefficient=fit.law.coefficient.to_dict(),
                         exponents={k: e.to_dict() for k, e in fit.law.exponents.items()},
                         points=fit.law.points, residual_std_log=fit.law.residual_std)
        return found

    return {
        "interval": f"{LEVEL:.0%} t interval of the least-squares fit in log (n - p degrees "
                    "of freedom); predictions: the t prediction interval of one more optimum",
        "lr_lines": [line_record(line) for line in laws.lines],
        "lr_laws": {o: [fit_record(f) for f in fits] for o, fits in laws.lr.items()},
        "other_hyperparameters": {o: {k: {"tuned": values, **fit_record(fit)}
                                      for k, (values, fit) in keys.items()}
                                  for o, keys in laws.others.items()},
        "lr_predictions": [{**{k: v for k, v in row.items() if k not in ("lr", "measured")},
                            "lr": row["lr"].to_dict(),
                            "measured": None if row["measured"] is None
                            else dataclasses.asdict(row["measured"])}
                           for row in laws.predictions]}
