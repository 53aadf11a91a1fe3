"""Critical batch size (Zhang et al. 2024, "How Does Critical Batch Size Scale in Pre-training?",
arXiv 2410.21676).

For each model size, runs at several batch sizes B give the steps S(B) each needs to reach a
common target loss. McCandlish et al. 2018 (arXiv 1812.06162) relate steps and examples E = B S
to a given loss by (S/S_min - 1)(E/E_min - 1) = 1; solved for S,

    S(B) = a + b / B          (a = S_min, b = E_min = S_min B_noise)

fitted by least squares on relative residuals ((a + b/B)/S - 1, so every batch size counts
alike) with a, b >= 0. Perfect linear scaling would need b / B steps; the overhead over it is
a B / b, and the critical batch size is where that overhead reaches Zhang et al.'s 20%:

    B* = 0.2 b / a

The data a model size needs at B* is D* = B* S(B*) = a B* + b (tokens, when B counts tokens).
CBS-vs-N and CBS-vs-D are power laws B* = k N^p, B* = k' D*^q fitted in log-log space, as Zhang
et al. fit theirs. Bootstrap resamples runs within each model size.

Steps to target come from logged loss curves (`steps_to_target`); the default target of a model
size is the highest of its runs' best (smoothed) losses, the lowest loss every run reached.
Schedules matter: with a decaying schedule the steps to a loss depend on the run length, so the
batch-size sweep should share the schedule's shape (Zhang et al. use constant LR + EWA).
"""
import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from scaling.bootstrap import Estimate, bootstrap, estimates, interval, predictive
from scaling.inputs import bootstrap_settings, positive_arrays
from scaling.objective import fit_power_law
from scaling.validation import HeldOut

OVERHEAD = 0.2
PARAMS = ["N_coef", "N_exponent", "D_coef", "D_exponent"]


def smoothed(loss: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` logged points, then the running minimum (the best loss so
    far): single-batch train losses are noisy, and a target counts as reached once reached."""
    if window < 1:
        raise ValueError(f"smoothing window {window}: must be at least 1 logged point")
    totals = np.concatenate([[0.0], np.cumsum(loss)])
    end = np.arange(1, len(loss) + 1)
    start = np.maximum(0, end - window)
    return np.minimum.accumulate((totals[end] - totals[start]) / (end - start))


def steps_to_target(steps, loss, target: float, window: int = 5) -> float:
    """First (interpolated) step where the smoothed loss reaches `target`; NaN if it never does."""
    steps, curve = np.asarray(steps, dtype=float), smoothed(np.asarray(loss, dtype=float), window)
    reached = np.flatnonzero(curve <= target)
    if len(reached) == 0:
        return np.nan
    i = reached[0]
    if i == 0:
        return float(steps[0])
    fraction = (curve[i - 1] - target) / (curve[i - 1] - curve[i])
    return float(steps[i - 1] + fraction * (steps[i] - steps[i - 1]))


def reachable_target(curves: list[np.ndarray], window: int = 5) -> float:
    """The highest of the runs' best smoothed losses: a target all of them reach."""
    return float(max(smoothed(np.asarray(c, dtype=float), window)[-1] for c in curves))


def fit_steps_vs_batch(batch, steps) -> tuple[float, float]:
    """(a, b) of S(B) = a + b/B, least squares on relative residuals, a, b >= 0."""
    batch, steps = np.asarray(batch, dtype=float), np.asarray(steps, dtype=float)
    (a, b), _ = nnls(np.stack([1 / steps, 1 / (batch * steps)], axis=1), np.ones(len(steps)))
    return float(a), float(b)


def critical_batch_size(a: float, b: float, overhead: float = OVERHEAD) -> float:
    """B* where S(B) exceeds linear scaling b/B by `overhead`; inf when a = 0 (no overhead)."""
    return overhead * b / a if a > 0 else np.inf


@dataclass(frozen=True)
class SizeSweep:
    """One model size's batch sweep: the S(B) fit and its critical batch size."""
    n: float
    batch: np.ndarray
    steps: np.ndarray
    a: float
    b: float
    cbs: Estimate
    tokens: Estimate                # D* = B* S(B*)


@dataclass(frozen=True)
class CriticalBatchFit:
    params: dict[str, Estimate]     # CBS = N_coef N^N_exponent = D_coef D^D_exponent
    point: np.ndarray
    samples: np.ndarray
    sweeps: list[SizeSweep]
    heldout: list[HeldOut]
    overhead: float
    level: float

    def predict_from_n(self, n) -> list[Estimate]:
        return predictive(lambda t: t[0] * np.asarray(n, dtype=float)**t[1], self.point,
                          self.samples, self.level)


def _size_results(n, batch, steps, sizes, overhead):
    """Per model size: (a, b, B*, D*); errors for sizes with too few batch sizes or no CBS."""
    rows = []
    for size in sizes:
        at = n == size
        if len(np.unique(batch[at])) < 3:
            raise ValueError(f"critical batch: model size N={size:.3g} has "
                             f"{len(np.unique(batch[at]))} distinct batch size(s); S(B) = a + "
                             "b/B needs 3 or more")
        a, b = fit_steps_vs_batch(batch[at], steps[at])
        cbs = critical_batch_size(a, b, overhead)
        if not np.isfinite(cbs) or cbs <= 0:
            raise ValueError(f"critical batch: N={size:.3g} shows no overhead over linear scaling "
                             f"up to B={batch[at].max():.3g}, so its critical batch size is not "
                             "resolved; add larger batch sizes")
        rows.append((a, b, cbs, a * cbs + b))
    return np.array(rows)


def fit_critical_batch(n, batch, steps, *, heldout=None, overhead: float = OVERHEAD,
                       n_bootstrap: int = 1000, seed: int = 0,
                       level: float = 0.95) -> CriticalBatchFit:
    """CBS per model size and its power laws in N and D*, from runs' (N, B, steps to target).

    `heldout` runs (whole model sizes, e.g. the largest) are left out; their own measured CBS is
    compared with the CBS-vs-N extrapolation."""
    n, batch, steps = positive_arrays("critical batch", 2, N=n, batch=batch, steps=steps)
    bootstrap_settings(n_bootstrap, level)
    held = np.zeros(len(n), bool) if heldout is None else np.asarray(heldout, bool)
    fit_n, fit_b, fit_s = n[~held], batch[~held], steps[~held]
    sizes = np.unique(fit_n)
    if len(sizes) < 3:
        raise ValueError(f"critical batch: {len(sizes)} model size(s) to fit; the CBS-vs-N and "
                         "CBS-vs-D power laws need at least 3")

    def solve(idx):
        rows = _size_results(fit_n[idx], fit_b[idx], fit_s[idx], sizes, overhead)
        return np.concatenate([fit_power_law(sizes, rows[:, 2]), fit_power_law(rows[:, 3],
                                                                                rows[:, 2]),
                               rows[:, 2], rows[:, 3]])

    point = solve(np.arange(len(fit_n)))
    samples = bootstrap(solve, len(fit_n), n_resamples=n_bootstrap, seed=seed, strata=fit_n,
                        label="critical batch")
    rows = _size_results(fit_n, fit_b, fit_s, sizes, overhead)
    k = len(sizes)
    sweeps = [SizeSweep(n=float(size), batch=fit_b[fit_n == size], steps=fit_s[fit_n == size],
                        a=rows[i, 0], b=rows[i, 1],
                        cbs=interval(rows[i, 2], samples[:, 4 + i], level),
                        tokens=interval(rows[i, 3], samples[:, 4 + k + i], level))
              for i, size in enumerate(sizes)]
    fit = CriticalBatchFit(params=estimates(PARAMS, point[:4], samples[:, :4], level),
                           point=point[:4], samples=samples[:, :4], sweeps=sweeps, heldout=[],
                           overhead=overhead, level=level)
    if not held.any():
        return fit
    held_sizes = np.unique(n[held])
    measured = _size_results(n[held], batch[held], steps[held], held_sizes, overhead)[:, 2]
    checks = [HeldOut(f"CBS at N={size:.3g}", size, float(actual), p) for size, actual, p in
              zip(held_sizes, measured, fit.predict_from_n(held_sizes))]
    return dataclasses.replace(fit, heldout=checks)
