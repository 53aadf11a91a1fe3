"""Compute power law on the compute frontier: L(C) = E + A C^-alpha.

The frontier is the lower envelope of final loss against training FLOPs over a ladder of runs
(Kaplan et al. 2020, arXiv 2001.08361, Sec. 6 and Fig. 1: the best loss reachable at each
compute); the law with an irreducible term is Henighan et al. 2020 (arXiv 2010.14701, eq. 1.1).
It is fitted like Approach 3 (scaling/objective.py): Huber(1e-3) on log-loss residuals of

    log L = LSE(a - alpha log(C / C_ref), e),   E = e^e,  A = e^a C_ref^alpha

with C_ref the geometric mean of the frontier's compute, so that a (the reducible loss at C_ref)
and alpha are not nearly collinear as they are with raw log C ~ 40. The full fit starts from 15
points (alpha 0.05 .. 0.8, E a tenth, half and nine tenths of the lowest frontier loss).

The bootstrap resamples the frontier runs, the ones the law is fitted to, and refits from the
full-data optimum and the `resample_starts` best starts. Resampling all runs and recomputing
the frontier instead mixes in the selection of each budget's best run (a resample missing it
falls back to a worse allocation), which made 90% intervals cover the truth 100% of the time
in simulation (75 of 75 checks; tests/scaling/test_compute.py).
"""
import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

from scaling.bootstrap import Estimate, bootstrap, estimates, predictive
from scaling.inputs import bootstrap_settings, positive_arrays
from scaling.objective import (
    best_starts,
    huber_log_objective,
    log_sum_exp,
    minimize_multistart,
)
from scaling.validation import HeldOut

PARAMS = ["E", "A", "alpha"]
# E = e^e is positive by construction: when the runs do not pin a floor, L-BFGS drives e to
# -inf and E onto this bound (scaling/guardrails.py warns).
LOWER_BOUNDS = {"E": 0.0}


def compute_frontier(compute, loss) -> np.ndarray:
    """Mask of the runs on the lower envelope: lower loss than every run with less compute."""
    compute, loss = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    order = np.lexsort((loss, compute))
    best_before = np.minimum.accumulate(np.concatenate([[np.inf], loss[order][:-1]]))
    mask = np.zeros(len(compute), bool)
    mask[order] = loss[order] < best_before
    return mask


def compute_law(compute, theta) -> np.ndarray:
    """L(C) = E + A C^-alpha at natural parameters theta = (E, A, alpha)."""
    e, big_a, alpha = theta
    return e + big_a * np.asarray(compute, dtype=float)**-alpha


@dataclass(frozen=True)
class ComputeLawFit:
    params: dict[str, Estimate]     # E, A, alpha
    point: np.ndarray               # natural (E, A, alpha)
    samples: np.ndarray
    frontier: np.ndarray            # mask over the fitted (not held-out) runs
    heldout: list[HeldOut]
    level: float

    def predict(self, compute) -> list[Estimate]:
        """Frontier loss L(C) with bootstrap bands."""
        return predictive(lambda t: compute_law(compute, t), self.point, self.samples,
                          self.level)


def _log_prediction(x: np.ndarray):
    """log L = LSE(a - alpha x, e) with x = log(C / C_ref); theta = (a, e, alpha)."""
    def predict_log(theta):
        a, e, alpha = theta
        log_pred, w = log_sum_exp(np.stack([a - alpha * x, np.full_like(x, e)]))
        return log_pred, np.stack([w[0], w[1], -w[0] * x])
    return predict_log


def _natural(theta, c_ref: float) -> np.ndarray:
    a, e, alpha = theta
    return np.array([np.exp(e), np.exp(a) * c_ref**alpha, alpha])


def fit_compute_law(compute, loss, *, heldout=None, n_bootstrap: int = 1000, seed: int = 0,
                    level: float = 0.95, resample_starts: int = 2,
                    groups=None) -> ComputeLawFit:
    """L(C) on the frontier of the runs outside `heldout`; the held-out runs that lie on the
    frontier of all runs are predicted. `groups` (the run of each learning-curve point):
    the bootstrap resamples whole runs' frontier points."""
    compute, loss = positive_arrays("compute law", len(PARAMS), C=compute, loss=loss)
    bootstrap_settings(n_bootstrap, level)
    held = np.zeros(len(compute), bool) if heldout is None else np.asarray(heldout, bool)
    fit_c, fit_loss = compute[~held], loss[~held]
    on = compute_frontier(fit_c, fit_loss)
    if on.sum() <= len(PARAMS):
        raise ValueError(f"compute law: {on.sum()} run(s) on the compute frontier (of "
                         f"{len(fit_c)}) for {len(PARAMS)} parameters; add runs at more "
                         "compute budgets")
    x, frontier_loss = np.log(fit_c[on]), fit_loss[on]
    x -= x.mean()  # log(C / C_ref)
    c_ref = float(np.exp(np.log(fit_c[on]).mean()))
    full_objective = huber_log_objective(_log_prediction(x), frontier_loss)
    low, mid = frontier_loss.min(), np.median(frontier_loss)
    starts = np.array([(np.log(mid - f * low), np.log(f * low), alpha) for f, alpha in
                       itertools.product([0.1, 0.5, 0.9], [0.05, 0.1, 0.2, 0.4, 0.8])])
    full = minimize_multistart(full_objective, starts)
    resample_from = np.vstack([full.x, best_starts(full_objective, starts, resample_starts)])
    point = _natural(full.x, c_ref)
    samples = bootstrap(
        lambda idx: _natural(minimize_multistart(
            huber_log_objective(_log_prediction(x[idx]), frontier_loss[idx]), resample_from).x,
            c_ref),
        len(x), n_resamples=n_bootstrap, seed=seed,
        groups=None if groups is None else np.asarray(groups)[~held][on],
        label="compute law")
    fit = ComputeLawFit(params=estimates(PARAMS, point, samples, level), point=point,
                        samples=samples, frontier=on, heldout=[], level=level)
    targets = held & compute_frontier(compute, loss)
    if not targets.any():
        return fit
    checks = [HeldOut(f"C={c:.3g}", c, float(actual), p) for c, actual, p in
              zip(compute[targets], loss[targets], fit.predict(compute[targets]))]
    return dataclasses.replace(fit, heldout=checks)
