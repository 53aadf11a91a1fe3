"""The robust objective every parametric law here is fitted with, and multi-start L-BFGS.

Hoffmann et al. 2022 (Chinchilla, arXiv 2203.15556, Sec. 3.3, eq. 3) fit L(N, D) by minimising
the Huber loss (delta = 1e-3) between the predicted and observed log loss, with L-BFGS started
from a grid of initialisations; Besiroglu et al. 2024 (arXiv 2404.10102) replicate that exactly
and Brandfonbrener et al. 2024 (arXiv 2411.12925) fit their per-dataset laws the same way.
The laws (scaling/compute_law.py, chinchilla.py, loss_to_loss.py) supply log L(theta) and its
Jacobian; `huber_log_objective` turns that into the objective and its analytic gradient.
"""
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import ThreadpoolController

HUBER_DELTA = 1e-3

# L-BFGS-B calls BLAS on tiny matrices; OpenBLAS's worker threads then only add hand-offs, and
# on a loaded machine they made each L-BFGS run ~50x slower (measured: 0.1 s -> 4.8 s for six
# runs). The optimisation runs with BLAS held to one thread.
_BLAS = ThreadpoolController()

# A law's prediction: theta -> (log L for every point, d log L / d theta, shape (n_params, n)).
LogPrediction = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def huber(residual: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber's loss (Huber 1964, Ann. Math. Statist. 35) of each residual and its derivative:
    r^2/2 inside [-delta, delta], delta (|r| - delta/2) outside."""
    magnitude = np.abs(residual)
    value = np.where(magnitude <= delta, 0.5 * residual**2, delta * (magnitude - 0.5 * delta))
    return value, np.clip(residual, -delta, delta)


def log_sum_exp(terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log(sum_k exp(terms[k])) over axis 0 and the softmax weights d/d terms[k], computed
    stably; a sum of positive power-law terms is evaluated this way in log space (Besiroglu et
    al. 2024: log L = LSE(a - alpha log N, b - beta log D, e))."""
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    return top + np.log(total), weights / total


def huber_log_objective(predict_log: LogPrediction, loss: np.ndarray,
                        delta: float = HUBER_DELTA) -> Callable:
    """theta -> (objective, gradient): the sum over points of Huber(log L_pred - log L_obs).

    The sum is divided by delta. The minimiser is unchanged, but L-BFGS-B's stopping tests are
    not scale-free (ftol is relative to max(|f|, 1), gtol absolute): an unscaled sum of
    O(delta * residual) terms is so small that default tolerances stop well short of the
    optimum. Scaled to O(1), the tolerances `minimize_multistart` sets (ftol 1e-13, gtol 1e-9)
    end within ~1e-12 of the optimal objective."""
    log_loss = np.log(loss)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            log_pred, jacobian = predict_log(theta)
            value, slope = huber(log_pred - log_loss, delta)
            total, gradient = value.sum() / delta, jacobian @ slope / delta
        if not np.isfinite(total) or not np.all(np.isfinite(gradient)):
            return np.inf, np.zeros_like(theta)
        return total, gradient

    return objective


@dataclass(frozen=True)
class MultiStartResult:
    x: np.ndarray        # the best optimum found
    fun: float           # its objective value
    n_starts: int        # L-BFGS runs made (starts with a finite objective)
    n_agree: int         # runs that ended within 1e-6 (relative) of the best value


def best_starts(objective: Callable, starts: np.ndarray, k: int) -> np.ndarray:
    """The k rows of `starts` with the lowest objective value (stable order on ties)."""
    at_start = np.array([objective(start)[0] for start in starts])
    return starts[np.argsort(at_start, kind="stable")[:k]]


def fit_power_law(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(coefficient, exponent) of y = coefficient * x^exponent by least squares in log-log
    space, the fit Hoffmann et al. 2022 (Sec. 3.1-3.2) use for N_opt(C) and Zhang et al. 2024
    for the critical batch size against N and D."""
    exponent, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(np.exp(intercept)), float(exponent)


def minimize_multistart(objective: Callable, starts: np.ndarray, *, keep_best: int | None = None,
                        bounds=None) -> MultiStartResult:
    """L-BFGS-B from each start (rows of `starts`), keeping the lowest optimum.

    With `keep_best`, only that many starts run: those with the lowest objective at the start
    itself (a cheap screen of a large grid). Non-finite starts and optima are discarded."""
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    if keep_best is not None:
        starts = best_starts(objective, starts, keep_best)
    results, ran = [], 0
    with _BLAS.limit(limits=1, user_api="blas"):
        for start in starts:
            if not np.isfinite(objective(start)[0]):
                continue
            ran += 1
            fit = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": 5000, "ftol": 1e-13, "gtol": 1e-9})
            if np.isfinite(fit.fun) and np.all(np.isfinite(fit.x)):
                results.append(fit)
    if not results:
        raise ValueError("no start converged to a finite optimum; the data cannot be described by "
                         "this law (check for zero or negative losses and degenerate sizes)")
    best = min(results, key=lambda r: r.fun)
    agree = sum(r.fun <= best.fun + 1e-6 * max(abs(best.fun), 1e-12) for r in results)
    return MultiStartResult(x=best.x, fun=float(best.fun), n_starts=ran, n_agree=agree)
