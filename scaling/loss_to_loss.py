"""Loss-to-loss prediction (Brandfonbrener et al. 2024, arXiv 2411.12925): shifted power laws

    L_y = K (L_x - E_x)^kappa + E_y

between train-to-train losses (models trained on two datasets, paired by equal (N, D), i.e. equal
compute), train-to-test losses (one model's loss on its own data against its loss on another
distribution) and test-to-test losses (two training sets' models on one test set, paired by
(N, D)). As in the authors' notebooks, each loss's offset E comes from its own fit of

    L(N, D) = ((A / N)^(alpha / beta) + B / D)^beta + E

(Huber 1e-3 on log-loss residuals, L-BFGS from several starts, scaled objective: see
scaling/objective.py), and then kappa and K are the least-squares line of log(L_y - E_y) on
log(L_x - E_x) with the E's held fixed.

Uncertainty: each offset fit bootstraps its own runs; a loss-to-loss resample i refits K and
kappa on resampled pairs with the i-th E_x and E_y draws. With one seed for all three, a
train-to-test fit (x and y are the same runs) resamples the same runs on all three levels.
"""
import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

from scaling.bootstrap import Estimate, bootstrap, estimates, predictive
from scaling.inputs import bootstrap_settings, positive_arrays, require_distinct
from scaling.objective import (
    best_starts,
    huber_log_objective,
    log_sum_exp,
    minimize_multistart,
)
from scaling.validation import HeldOut

OFFSET_PARAMS = ["A", "B", "E", "alpha", "beta"]
SHIFT_PARAMS = ["K", "kappa", "E_x", "E_y"]
_EXPONENT_BOUNDS = [(None, None)] * 3 + [(1e-3, None)] * 2  # alpha/beta divides
# The optimizer's bounds in natural units (A, B, E = e^a, e^b, e^e are positive by
# construction), for scaling/guardrails.py's "on a bound" warning.
OFFSET_LOWER_BOUNDS = {"E": 0.0, **{name: low for name, (low, _) in
                                    zip(OFFSET_PARAMS, _EXPONENT_BOUNDS) if low is not None}}


def offset_law(n, d, theta) -> np.ndarray:
    """The per-dataset law ((A/N)^(alpha/beta) + B/D)^beta + E at natural parameters theta =
    (A, B, E, alpha, beta)."""
    big_a, big_b, e, alpha, beta = theta
    n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
    return ((big_a / n)**(alpha / beta) + big_b / d)**beta + e


def _log_prediction(log_n: np.ndarray, log_d: np.ndarray):
    """log L = LSE(beta LSE(u, v), e) with u = (alpha/beta)(a - log N), v = b - log D."""
    def predict_log(theta):
        a, b, e, alpha, beta = theta
        u = (alpha / beta) * (a - log_n)
        inner, w_inner = log_sum_exp(np.stack([u, b - log_d]))
        log_pred, w = log_sum_exp(np.stack([beta * inner, np.full_like(log_n, e)]))
        w_u, w_v, w_t = w_inner[0], w_inner[1], w[0]
        return log_pred, np.stack([
            w_t * alpha * w_u, w_t * beta * w_v, w[1], w_t * w_u * (a - log_n),
            w_t * (inner - (alpha / beta) * w_u * (a - log_n))])
    return predict_log


def _natural(theta) -> np.ndarray:
    a, b, e, alpha, beta = theta
    return np.array([np.exp(a), np.exp(b), np.exp(e), alpha, beta])


def offset_starts(n, d, loss) -> np.ndarray:
    """Starting points scaled to the data: A at the smallest, middle and largest model size, B at
    the smallest, middle and largest token count (the scales where each term is ~1), E at a
    quarter, half and three quarters of the lowest loss, alpha and beta 0.3 and 0.6."""
    def spread(x):
        return np.log([x.min(), np.exp(np.log(x).mean()), x.max()])
    return np.array(list(itertools.product(
        spread(n), spread(d), np.log([0.25, 0.5, 0.75]) + np.log(loss.min()), [0.3, 0.6],
        [0.3, 0.6])))


@dataclass(frozen=True)
class OffsetLawFit:
    """The per-dataset law fitted to one loss: E is the offset a loss-to-loss law shifts by."""
    params: dict[str, Estimate]     # A, B, E, alpha, beta
    point: np.ndarray               # natural (A, B, E, alpha, beta)
    samples: np.ndarray             # bootstrap draws, same order
    n_points: int
    seed: int
    level: float

    def predict(self, n, d) -> list[Estimate]:
        return predictive(lambda t: offset_law(n, d, t), self.point, self.samples, self.level)


def fit_offset_law(n, d, loss, *, n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95,
                   keep_best: int | None = 12, resample_starts: int = 2,
                   groups=None) -> OffsetLawFit:
    """The per-dataset law fitted to final losses of runs with N parameters and D tokens (or
    their learning curves' points, `groups` naming each point's run: resampled run by run).

    The full fit runs L-BFGS from the `keep_best` best of `offset_starts` (None: all 108);
    each bootstrap resample from the full-data optimum and the `resample_starts` best starts."""
    n, d, loss = positive_arrays("loss-to-loss offset law", len(OFFSET_PARAMS), N=n, D=d,
                                 loss=loss)
    bootstrap_settings(n_bootstrap, level)
    require_distinct("loss-to-loss offset law", "model size N", n, 3)
    require_distinct("loss-to-loss offset law", "token count D", d, 3)
    log_n, log_d = np.log(n), np.log(d)
    starts = offset_starts(n, d, loss)
    full_objective = huber_log_objective(_log_prediction(log_n, log_d), loss)
    full = minimize_multistart(full_objective, starts, keep_best=keep_best,
                               bounds=_EXPONENT_BOUNDS)
    resample_from = np.vstack([full.x, best_starts(full_objective, starts, resample_starts)])

    def refit(idx):
        objective = huber_log_objective(_log_prediction(log_n[idx], log_d[idx]), loss[idx])
        return _natural(minimize_multistart(objective, resample_from,
                                            bounds=_EXPONENT_BOUNDS).x)

    samples = bootstrap(refit, len(n), n_resamples=n_bootstrap, seed=seed, groups=groups,
                        label="loss-to-loss offset law")
    point = _natural(full.x)
    return OffsetLawFit(params=estimates(OFFSET_PARAMS, point, samples, level), point=point,
                        samples=samples, n_points=len(n), seed=seed, level=level)


def pair_by_size(x_n, x_d, y_n, y_d) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ix, iy) of x and y runs with equal (N, D) (to 1e-6 relative): the paper pairs
    models trained on different data by training compute this way."""
    def keys(n, d):
        rounded = np.round(np.log(np.stack([n, d], axis=1).astype(float)) * 1e6).astype(np.int64)
        as_tuples = list(map(tuple, rounded))
        if len(set(as_tuples)) != len(as_tuples):
            raise ValueError("two runs on one side share (N, D); pairing by size is ambiguous "
                             "(keep one run per size, e.g. filter by seed)")
        return {key: i for i, key in enumerate(as_tuples)}
    x_keys, y_keys = keys(x_n, x_d), keys(y_n, y_d)
    shared = sorted(set(x_keys) & set(y_keys))
    return (np.array([x_keys[k] for k in shared], dtype=int),
            np.array([y_keys[k] for k in shared], dtype=int))


def shifted_power_law(x_loss, theta) -> np.ndarray:
    """L_y = K (L_x - E_x)^kappa + E_y at theta = (K, kappa, E_x, E_y); NaN below E_x."""
    k, kappa, e_x, e_y = theta
    with np.errstate(invalid="ignore"):
        return k * (np.asarray(x_loss, dtype=float) - e_x)**kappa + e_y


def fit_shift(x_loss, y_loss, e_x: float, e_y: float) -> np.ndarray:
    """(K, kappa, E_x, E_y): kappa and log K by least squares of log(L_y - E_y) on
    log(L_x - E_x), the E's fixed."""
    if np.any(x_loss <= e_x) or np.any(y_loss <= e_y):
        raise ValueError(f"losses at or below their fitted offset (E_x={e_x:.4g}, "
                         f"E_y={e_y:.4g}): the shifted power law is undefined there")
    kappa, log_k = np.polyfit(np.log(x_loss - e_x), np.log(y_loss - e_y), 1)
    return np.array([np.exp(log_k), kappa, e_x, e_y])


@dataclass(frozen=True)
class LossToLossFit:
    kind: str                       # train_to_train, train_to_test or test_to_test
    x_label: str
    y_label: str
    params: dict[str, Estimate]     # K, kappa, E_x, E_y
    point: np.ndarray
    samples: np.ndarray
    x_loss: np.ndarray              # the fitted pairs
    y_loss: np.ndarray
    heldout: list[HeldOut]
    level: float

    def predict(self, x_loss) -> list[Estimate]:
        """L_y at the given L_x, with bootstrap bands."""
        return predictive(lambda t: shifted_power_law(x_loss, t), self.point, self.samples,
                          self.level)


def fit_loss_to_loss(x_loss, y_loss, x_offset: OffsetLawFit, y_offset: OffsetLawFit, *,
                     kind: str, labels: tuple[str, str] = ("x", "y"), heldout_x=None,
                     heldout_y=None, heldout_labels=None, groups=None) -> LossToLossFit:
    """K and kappa on paired losses (x_loss[i], y_loss[i]) given each side's offset fit; the
    pairs (heldout_x, heldout_y) are predicted from their x losses and reported. `groups`
    (the x run of each pair): the bootstrap resamples whole runs."""
    x_loss, y_loss = positive_arrays(f"loss-to-loss {kind}", 2, x_loss=x_loss, y_loss=y_loss)
    if len(x_offset.samples) != len(y_offset.samples):
        raise ValueError("the two offset fits have different bootstrap sizes "
                         f"({len(x_offset.samples)} and {len(y_offset.samples)}); fit both "
                         "with the same n_bootstrap")
    e_x, e_y = x_offset.point[2], y_offset.point[2]
    point = fit_shift(x_loss, y_loss, e_x, e_y)
    draws = iter(zip(x_offset.samples[:, 2], y_offset.samples[:, 2]))

    def refit(idx):
        draw_x, draw_y = next(draws)
        if not np.isfinite(draw_x + draw_y):
            raise ValueError("an offset fit failed on this resample")
        return fit_shift(x_loss[idx], y_loss[idx], draw_x, draw_y)

    samples = bootstrap(refit, len(x_loss), n_resamples=len(x_offset.samples),
                        seed=x_offset.seed, groups=groups, label="loss-to-loss")
    fit = LossToLossFit(kind=kind, x_label=labels[0], y_label=labels[1],
                        params=estimates(SHIFT_PARAMS, point, samples, x_offset.level),
                        point=point, samples=samples, x_loss=x_loss, y_loss=y_loss, heldout=[],
                        level=x_offset.level)
    if heldout_x is None or len(heldout_x) == 0:
        return fit
    names = heldout_labels or [f"L_x={v:.4g}" for v in heldout_x]
    heldout_x = np.asarray(heldout_x, dtype=float)
    checks = [HeldOut(name, x, float(actual), p) for name, x, actual, p in
              zip(names, heldout_x, heldout_y, fit.predict(heldout_x))]
    return dataclasses.replace(fit, heldout=checks)
