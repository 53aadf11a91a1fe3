"""Chinchilla L(N, D): Approach 3 (parametric fit) and Approach 2 (IsoFLOP parabolas), and the
compute-optimal allocation N*(C), D*(C) they imply (Hoffmann et al. 2022, arXiv 2203.15556).

Approach 3 (Hoffmann Sec. 3.3, eq. 2-3; fitted as Besiroglu et al. 2024, arXiv 2404.10102):

    L(N, D) = E + A / N^alpha + B / D^beta
    log L   = LSE(a - alpha log N, b - beta log D, e),   A = e^a, B = e^b, E = e^e

minimising the sum of Huber(delta=1e-3) log-loss residuals with L-BFGS from the 4,500-point
grid alpha, beta in {0, .5, .., 2}, e in {-1, -.5, .., 1}, a, b in {0, 5, .., 25}.

Bootstrap resamples do not rerun the 4,500 starts: each starts from the full-sample optimum plus
the `resample_starts` grid points with the lowest full-sample objective. On the Chinchilla data
this finds the same optima as the full grid (tests/scaling/test_chinchilla.py checks it).

Compute-optimal allocation under C = 6 N D (Hoffmann eq. 4):

    N*(C) = G (C/6)^a,  D*(C) = G^-1 (C/6)^b,  G = (alpha A / (beta B))^(1/(alpha+beta)),
    a = beta / (alpha + beta),  b = alpha / (alpha + beta)

Approach 2 (Hoffmann Sec. 3.2): for each FLOP budget, a parabola in log N (and one in log D)
through the final losses gives the loss-minimising N (D); power laws N_opt = k C^a, D_opt = k' C^b
are then fitted to the minima in log-log space.
"""
import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

from scaling.bootstrap import Estimate, bootstrap, estimates, predictive
from scaling.inputs import bootstrap_settings, positive_arrays, require_distinct
from scaling.objective import (
    HUBER_DELTA,
    best_starts,
    fit_power_law,
    huber_log_objective,
    log_sum_exp,
    minimize_multistart,
)
from scaling.validation import HeldOut

BESIROGLU_GRID = np.array(list(itertools.product(
    np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5),
    np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5))), dtype=float)  # rows: a, b, e, alpha, beta

PARAMS = ["A", "B", "E", "alpha", "beta"]
LOWER_BOUNDS = {"E": 0.0}  # E = e^e: a fit without a resolved floor drives E onto 0
ALLOCATION = ["a", "b", "G"]


def chinchilla_loss(n, d, theta) -> np.ndarray:
    """Hoffmann eq. 2 at natural parameters theta = (A, B, E, alpha, beta)."""
    big_a, big_b, e, alpha, beta = theta
    return e + big_a / np.asarray(n, dtype=float)**alpha + big_b / np.asarray(d, dtype=float)**beta


def allocation_exponents(theta) -> np.ndarray:
    """(a, b, G) of Hoffmann eq. 4 from natural parameters (A, B, E, alpha, beta)."""
    big_a, big_b, _, alpha, beta = theta
    total = alpha + beta
    return np.array([beta / total, alpha / total, (alpha * big_a / (beta * big_b))**(1 / total)])


def compute_optimal(compute, theta) -> tuple[np.ndarray, np.ndarray]:
    """N*(C), D*(C) of Hoffmann eq. 4 (C = 6 N D) at natural parameters theta."""
    a, b, g = allocation_exponents(theta)
    scaled = np.asarray(compute, dtype=float) / 6
    return g * scaled**a, scaled**b / g


def _log_prediction(log_n: np.ndarray, log_d: np.ndarray):
    def predict_log(theta):
        a, b, e, alpha, beta = theta
        terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
        log_pred, w = log_sum_exp(terms)
        return log_pred, np.stack([w[0], w[1], w[2], -w[0] * log_n, -w[1] * log_d])
    return predict_log


def _natural(theta) -> np.ndarray:
    a, b, e, alpha, beta = theta
    return np.array([np.exp(a), np.exp(b), np.exp(e), alpha, beta])


@dataclass(frozen=True)
class ChinchillaFit:
    """Approach 3 fit: parameters and allocation exponents with intervals, bootstrap draws."""
    params: dict[str, Estimate]     # A, B, E, alpha, beta, a, b, G
    point: np.ndarray               # natural (A, B, E, alpha, beta) of the full-data fit
    samples: np.ndarray             # bootstrap draws of (A, B, E, alpha, beta, a, b, G)
    heldout: list[HeldOut]
    n_points: int
    objective: float                # sum of Huber log-residuals / delta at the optimum
    n_starts: int
    n_agree: int                    # starts that reached the optimum
    level: float

    def predict(self, n, d) -> list[Estimate]:
        """L(N, D) with bootstrap bands."""
        return predictive(lambda t: chinchilla_loss(n, d, t[:5]), self.point, self.samples,
                          self.level)

    def optimal_allocation(self, compute) -> dict[str, list[Estimate]]:
        """N*(C), D*(C) and the loss at that allocation, with bootstrap bands."""
        def at(theta):
            n, d = compute_optimal(compute, theta[:5])
            return np.concatenate([n, d, chinchilla_loss(n, d, theta[:5])])
        bands = predictive(at, self.point, self.samples, self.level)
        k = len(np.atleast_1d(compute))
        return {"N_opt": bands[:k], "D_opt": bands[k:2 * k], "loss": bands[2 * k:]}


def fit_approach3(n, d, loss, *, heldout=None, n_bootstrap: int = 1000, seed: int = 0,
                  level: float = 0.95, grid: np.ndarray = BESIROGLU_GRID,
                  keep_best: int | None = None, resample_starts: int = 2,
                  delta: float = HUBER_DELTA) -> ChinchillaFit:
    """Hoffmann Approach 3 on final losses of runs with N parameters and D tokens.

    `heldout` (boolean mask) runs are left out and predicted; `keep_best` screens the grid to
    that many starts (None: all of them, as Besiroglu et al.)."""
    n, d, loss = positive_arrays("Chinchilla approach 3", len(PARAMS), N=n, D=d, loss=loss)
    bootstrap_settings(n_bootstrap, level)
    held = np.zeros(len(n), bool) if heldout is None else np.asarray(heldout, bool)
    if held.shape != n.shape:
        raise ValueError(f"heldout mask has {held.size} entries for {n.size} runs")
    fit_n, fit_d, fit_loss = n[~held], d[~held], loss[~held]
    positive_arrays("Chinchilla approach 3 (runs left to fit after holding out)", len(PARAMS),
                    loss=fit_loss)
    require_distinct("Chinchilla approach 3", "model size N", fit_n, 3)
    require_distinct("Chinchilla approach 3", "token count D", fit_d, 3)
    log_n, log_d = np.log(fit_n), np.log(fit_d)

    def solve(idx, starts):
        objective = huber_log_objective(_log_prediction(log_n[idx], log_d[idx]), fit_loss[idx],
                                        delta)
        return minimize_multistart(objective, starts)

    full_objective = huber_log_objective(_log_prediction(log_n, log_d), fit_loss, delta)
    full = minimize_multistart(full_objective, grid, keep_best=keep_best)
    resample_from = np.vstack([full.x, best_starts(full_objective, grid, resample_starts)])
    samples = bootstrap(lambda idx: _with_allocation(_natural(solve(idx, resample_from).x)),
                        len(fit_n), n_resamples=n_bootstrap, seed=seed,
                        label="Chinchilla approach 3")
    point = _natural(full.x)
    fit = ChinchillaFit(params=estimates(PARAMS + ALLOCATION, _with_allocation(point), samples,
                                         level),
                        point=point, samples=samples, heldout=[], n_points=len(fit_n),
                        objective=full.fun, n_starts=full.n_starts, n_agree=full.n_agree,
                        level=level)
    if not held.any():
        return fit
    predicted = fit.predict(n[held], d[held])
    checks = [HeldOut(f"N={ni:.3g}, D={di:.3g}", 6 * ni * di, float(li), p)
              for ni, di, li, p in zip(n[held], d[held], loss[held], predicted)]
    return dataclasses.replace(fit, heldout=checks)


def _with_allocation(theta) -> np.ndarray:
    return np.concatenate([theta, allocation_exponents(theta)])


def group_budgets(compute, rtol: float = 0.1) -> np.ndarray:
    """IsoFLOP budget of each run: runs whose compute lies within `rtol` of the next smaller
    run's share a budget, labelled by the group's geometric-mean compute."""
    compute = np.asarray(compute, dtype=float)
    order = np.argsort(compute)
    log_c = np.log(compute[order])
    group = np.concatenate([[0], np.cumsum(np.diff(log_c) > np.log1p(rtol))])
    labels = np.empty_like(compute)
    for g in np.unique(group):
        labels[order[group == g]] = np.exp(log_c[group == g].mean())
    return labels


def isoflop_minimum(log_x: np.ndarray, loss: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(argmin log x, min loss, coefficients) of the least-squares parabola loss(log x).

    A profile that is not convex, or whose vertex lies outside the sampled sizes, does not
    locate a minimum (Hoffmann et al. centre their IsoFLOP sweeps on it)."""
    if len(np.unique(log_x)) < 3:
        raise ValueError(f"an IsoFLOP parabola needs 3 or more distinct sizes; got "
                         f"{len(np.unique(log_x))}")
    coefficients = np.polyfit(log_x, loss, 2)
    if coefficients[0] <= 0:
        raise ValueError("an IsoFLOP profile is not convex: its runs do not bracket the minimum "
                         "(add smaller and larger models at that budget)")
    x_min = -coefficients[1] / (2 * coefficients[0])
    if not log_x.min() <= x_min <= log_x.max():
        raise ValueError(f"an IsoFLOP profile's minimum lies outside its sampled range "
                         f"[{np.exp(log_x.min()):.3g}, {np.exp(log_x.max()):.3g}]: the runs do not "
                         "bracket it (add sizes on that side)")
    return float(x_min), float(np.polyval(coefficients, x_min)), coefficients


@dataclass(frozen=True)
class IsoFlopFit:
    """Approach 2: N_opt = N_coef C^a and D_opt = D_coef C^b, with the per-budget minima."""
    params: dict[str, Estimate]     # a, b, N_coef, D_coef
    point: np.ndarray
    samples: np.ndarray
    budgets: np.ndarray             # compute of each fitted budget
    n_opt: np.ndarray               # parabola minima, full data
    d_opt: np.ndarray
    loss_min: np.ndarray
    parabolas: list                 # per budget: polynomial coefficients of loss in log N
    heldout: list[HeldOut]
    level: float

    def predict(self, compute) -> dict[str, list[Estimate]]:
        """N_opt(C), D_opt(C) with bootstrap bands."""
        k = len(np.atleast_1d(compute))
        bands = predictive(lambda t: np.concatenate(_allocation_laws(t, compute)), self.point,
                           self.samples, self.level)
        return {"N_opt": bands[:k], "D_opt": bands[k:]}


def _allocation_laws(theta, compute):
    a, b, n_coef, d_coef = theta
    compute = np.atleast_1d(np.asarray(compute, dtype=float))
    return n_coef * compute**a, d_coef * compute**b


def _budget_minima(n, d, loss, labels):
    """Per budget: compute, N_opt, D_opt, minimum loss and the log-N parabola's coefficients."""
    budgets = np.unique(labels)
    rows, parabolas = [], []
    for c in budgets:
        at = labels == c
        log_n_opt, loss_min, coefficients = isoflop_minimum(np.log(n[at]), loss[at])
        log_d_opt = isoflop_minimum(np.log(d[at]), loss[at])[0]
        rows.append((np.exp(log_n_opt), np.exp(log_d_opt), loss_min))
        parabolas.append(coefficients)
    return budgets, np.array(rows), parabolas


def fit_approach2(n, d, compute, loss, *, budgets=None, heldout=None, n_bootstrap: int = 1000,
                  seed: int = 0, level: float = 0.95) -> IsoFlopFit:
    """Hoffmann Approach 2 on runs grouped into FLOP budgets (`budgets`, or grouped by compute).

    Bootstrap resamples runs within each budget. Held-out runs must form whole budgets; their
    parabola minima are compared with the extrapolated N_opt, D_opt."""
    n, d, compute, loss = positive_arrays("Chinchilla approach 2", 4, N=n, D=d, C=compute,
                                          loss=loss)
    bootstrap_settings(n_bootstrap, level)
    labels = group_budgets(compute) if budgets is None else np.asarray(budgets, dtype=float)
    held = np.zeros(len(n), bool) if heldout is None else np.asarray(heldout, bool)
    fit_labels = labels[~held]
    if len(np.unique(fit_labels)) < 3:
        raise ValueError(f"Chinchilla approach 2: {len(np.unique(fit_labels))} FLOP budget(s) to "
                         "fit; the N_opt(C) power law needs at least 3 (train IsoFLOP sweeps at "
                         "more budgets)")
    fit_n, fit_d, fit_loss = n[~held], d[~held], loss[~held]

    def solve(idx):
        budgets_, minima, _ = _budget_minima(fit_n[idx], fit_d[idx], fit_loss[idx],
                                             fit_labels[idx])
        n_coef, a = fit_power_law(budgets_, minima[:, 0])
        d_coef, b = fit_power_law(budgets_, minima[:, 1])
        return np.array([a, b, n_coef, d_coef])

    point = solve(np.arange(len(fit_n)))
    budgets_, minima, parabolas = _budget_minima(fit_n, fit_d, fit_loss, fit_labels)
    samples = bootstrap(solve, len(fit_n), n_resamples=n_bootstrap, seed=seed, strata=fit_labels,
                        label="Chinchilla approach 2")
    fit = IsoFlopFit(params=estimates(["a", "b", "N_coef", "D_coef"], point, samples, level),
                     point=point, samples=samples, budgets=budgets_, n_opt=minima[:, 0],
                     d_opt=minima[:, 1], loss_min=minima[:, 2], parabolas=parabolas, heldout=[],
                     level=level)
    if not held.any():
        return fit
    held_budgets, held_minima, _ = _budget_minima(n[held], d[held], loss[held], labels[held])
    predicted = fit.predict(held_budgets)
    checks = []
    for i, c in enumerate(held_budgets):
        checks.append(HeldOut(f"N_opt at C={c:.3g}", c, float(held_minima[i, 0]),
                              predicted["N_opt"][i]))
        checks.append(HeldOut(f"D_opt at C={c:.3g}", c, float(held_minima[i, 1]),
                              predicted["D_opt"][i]))
    return dataclasses.replace(fit, heldout=checks)
