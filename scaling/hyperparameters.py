"""Hyperparameter scaling laws: a tuned hyperparameter h (the peak lr above all) as a power law
of model size N and training tokens D,

    log h = log a + b log N  (+ c log D),

fitted by least squares to the optimum found at each size (and data budget), so that sizes
nobody tuned get a predicted setting. The lr falls as a power of N in DeepSeek LLM (Bi et al.
2024, arXiv 2401.02954, Sec. 3.1, against compute) and of the token horizon D at a fixed N in
Bjorck et al. 2024 (arXiv 2409.19913); marin's optimizer sweep (Wen et al. 2025) fits its tuned
hyperparameters against N and D the same way.

A size's optimum comes from a line of evaluated values (the others fixed), e.g. the lr grid
around the best lr: `grid_optimum` takes the lowest loss and, when it has an evaluated
neighbour on each side, the vertex of the parabola in log h through it and those neighbours
(the grid quantizes the lr by ~3x; the vertex does not). At a line's edge the optimum is only
bounded (at or below the lowest value tried, or at or above the highest), so it is flagged and
kept out of the fits.

Intervals are t intervals of the least-squares fit (n - p degrees of freedom), not a bootstrap
over sizes: with the 3-6 sizes a study tunes, most resamples of the sizes repeat a size and
many hold two or fewer (the slope is then undefined or rests on two points), and the percentile
interval of so few distinct refits is too narrow, while the t interval, exact for independent
normal errors in log h, widens with the few degrees of freedom left. The errors are the scatter
of the per-size optima about the law (seed noise and the vertex's error included); a slope needs
3 or more distinct values of its variable for an interval, and fewer is refused, not reported.
"""
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from scaling.bootstrap import Estimate
from scaling.inputs import positive_arrays, require_distinct

EDGES = ("low edge", "high edge", "single value")


@dataclass(frozen=True)
class Optimum:
    """A hyperparameter's optimum at one size from a line of evaluated values: `value` its
    estimate, `grid_value` the evaluated value with the lowest loss, and `status`:
    "vertex" (the parabola's vertex between the best value's neighbours), "grid" (bracketed,
    but a neighbour diverged: the grid value), or one of EDGES
    (the best is the lowest or highest value tried, or the only one: a bound, not an
    estimate)."""
    value: float
    grid_value: float
    status: str

    @property
    def bracketed(self) -> bool:
        return self.status not in EDGES


def grid_optimum(values, losses) -> Optimum:
    """The optimum of a line of `values` (> 0, any order) with their `losses` (inf or NaN: the
    run diverged or failed): the lowest finite loss, refined to the vertex of the parabola in
    log value through it and its two neighbours when both are finite."""
    values, losses = np.asarray(values, float), np.asarray(losses, float)
    if len(values) == 0 or len(values) != len(losses):
        raise ValueError(f"grid_optimum: {len(values)} values and {len(losses)} losses; give "
                         "one loss per evaluated value")
    if np.any(~np.isfinite(values) | (values <= 0)) or len(np.unique(values)) < len(values):
        raise ValueError(f"grid_optimum: the values {values.tolist()} must be distinct, finite "
                         "and positive (the parabola is in log value)")
    order = np.argsort(values)
    values, losses = values[order], losses[order]
    finite = np.isfinite(losses)
    if not finite.any():
        raise ValueError(f"grid_optimum: no finite loss at {values.tolist()}: every run "
                         "diverged or failed; evaluate lower values")
    i = int(np.argmin(np.where(finite, losses, np.inf)))
    best = float(values[i])
    if len(values) == 1:
        return Optimum(best, best, "single value")
    if i in (0, len(values) - 1):
        return Optimum(best, best, "low edge" if i == 0 else "high edge")
    if not finite[i - 1] or not finite[i + 1]:
        return Optimum(best, best, "grid")
    # The middle loss is the lowest of the three (strictly below the left one, as argmin takes
    # the first of ties), so the parabola is convex and its vertex lies between the neighbours.
    curvature, slope, _ = np.polyfit(np.log(values[i - 1:i + 2]), losses[i - 1:i + 2], 2)
    return Optimum(float(np.exp(-slope / (2 * curvature))), best, "vertex")


@dataclass(frozen=True, eq=False)
class PowerLaw:
    """h = a prod_k x_k^b_k fitted by least squares in log h: each parameter's t interval at
    `level`, and what predictions need (the coefficients, (X'X)^-1, the residual std)."""
    names: tuple           # the predictors, e.g. ("N",) or ("N", "D")
    coefficient: Estimate  # a (at every x_k = 1: far outside the data, hence its wide interval)
    exponents: dict        # name -> Estimate of its exponent
    points: int
    residual_std: float    # of log h about the law
    level: float
    theta: np.ndarray      # (log a, b_1, ...)
    inverse_gram: np.ndarray

    @property
    def dof(self) -> int:
        return self.points - len(self.theta)

    def predict(self, **x: float) -> Estimate:
        """h at the predictors' values `x`, with the t prediction interval of one more
        optimum there (the law's uncertainty and the optima's scatter about it)."""
        if set(x) != set(self.names):
            raise ValueError(f"predict needs {', '.join(self.names)}; got {', '.join(x)}")
        row = np.r_[1.0, [math.log(x[name]) for name in self.names]]
        centre = float(row @ self.theta)
        half = (stats.t.ppf(0.5 + self.level / 2, self.dof) * self.residual_std
                * math.sqrt(1 + row @ self.inverse_gram @ row))
        return Estimate(math.exp(centre), math.exp(centre - half), math.exp(centre + half),
                        self.level)

    def formula(self, symbol: str = "h") -> str:
        """e.g. "lr = 0.81 N^-0.312 D^-0.15" (point estimates)."""
        terms = " ".join(f"{name}^{e.value:.3g}" for name, e in self.exponents.items())
        return f"{symbol} = {self.coefficient.value:.3g} {terms}"


def fit_hyperparameter_law(values, predictors: dict, level: float = 0.95,
                  law: str = "hyperparameter law") -> PowerLaw:
    """log values = log a + sum_k b_k log predictors[k] by least squares, with t intervals
    (module docstring). Refused (ValueError, naming the fix) when a predictor takes fewer than
    3 distinct values, when there are no more points than parameters, or when two predictors
    move together in these points (e.g. D a fixed multiple of N)."""
    if not predictors:
        raise ValueError(f"{law}: give at least one predictor (e.g. N)")
    for name, column in predictors.items():
        require_distinct(law, name, np.asarray(column, float), 3)
    h, *columns = positive_arrays(law, 1 + len(predictors), h=values, **predictors)
    design = np.column_stack([np.ones(len(h)), *map(np.log, columns)])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise ValueError(f"{law}: log {' and log '.join(predictors)} are collinear in these "
                         "points (e.g. a fixed number of tokens per parameter), so their "
                         "exponents cannot be told apart; add points that vary one alone")
    theta, *_ = np.linalg.lstsq(design, np.log(h), rcond=None)
    dof = len(h) - design.shape[1]
    residual_std = float(np.sqrt(np.sum((np.log(h) - design @ theta) ** 2) / dof))
    inverse_gram = np.linalg.inv(design.T @ design)
    half = (stats.t.ppf(0.5 + level / 2, dof) * residual_std
            * np.sqrt(np.diag(inverse_gram)))
    bounds = [Estimate(float(v), float(v - w), float(v + w), level)
              for v, w in zip(theta, half)]
    log_a = bounds[0]
    coefficient = Estimate(math.exp(log_a.value), math.exp(log_a.low), math.exp(log_a.high),
                           level)
    return PowerLaw(tuple(predictors), coefficient, dict(zip(predictors, bounds[1:])), len(h),
                    residual_std, level, theta, inverse_gram)
