"""Nonparametric bootstrap over runs: every fitted number is reported with an interval.

Runs are resampled with replacement (within strata when the design has them, e.g. batch-size
sweeps per model size; whole runs when a fit uses many points of each run's learning curve,
since one run's checkpoints are not independent draws), the whole fit is repeated on each
resample, and intervals are the percentile intervals of the refitted values (Efron &
Tibshirani 1993, An Introduction to the Bootstrap, Ch. 13) - as Besiroglu et al. 2024 report
for the Chinchilla fit. Predictions (extrapolated losses, compute-optimal sizes) get their bands
the same way: the prediction is evaluated at every resample's parameters.
"""
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from core import cli


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its bootstrap percentile interval at `level`."""
    value: float
    low: float
    high: float
    level: float

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.4g} [{self.low:.4g}, {self.high:.4g}]"


def resample_indices(n: int, rng: np.random.Generator, strata: np.ndarray | None = None,
                     groups: np.ndarray | None = None):
    """n indices drawn with replacement; with `strata`, each stratum keeps its own size; with
    `groups` (e.g. the run each learning-curve point belongs to), whole groups are drawn with
    replacement and all their items taken (the cluster bootstrap)."""
    if groups is not None:
        labels = np.unique(groups)
        drawn = rng.choice(labels, size=len(labels), replace=True)
        return np.concatenate([np.flatnonzero(groups == label) for label in drawn])
    if strata is None:
        return rng.integers(0, n, size=n)
    picks = []
    for label in np.unique(strata):
        members = np.flatnonzero(strata == label)
        picks.append(rng.choice(members, size=len(members), replace=True))
    return np.concatenate(picks)


def bootstrap(fit: Callable[[np.ndarray], np.ndarray], n_items: int, *, n_resamples: int,
              seed: int, strata: np.ndarray | None = None,
              groups: np.ndarray | None = None, label: str = "") -> np.ndarray:
    """(n_resamples, k) refitted values: row i is fit(indices of resample i), drawn by
    `resample_indices` (`groups`: resample whole groups). A progress bar on stderr names the
    fit (`label`): live on a terminal, a line a minute in a log (core.cli.progress).

    A resample the fit rejects (ValueError: e.g. it drew a single model size) gives a NaN row;
    the intervals use the others and a warning says how many were lost."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in cli.progress(range(n_resamples), desc=f"bootstrap {label}".strip(), unit="fit",
                          leave=False):
        try:
            rows.append(np.atleast_1d(np.asarray(
                fit(resample_indices(n_items, rng, strata, groups)), dtype=float)))
        except ValueError:
            rows.append(None)
    width = max((len(r) for r in rows if r is not None), default=0)
    failed = sum(r is None for r in rows)
    if failed == n_resamples:
        raise ValueError("every bootstrap resample failed to fit; the data are too few or too "
                         "degenerate for intervals")
    if failed > 0.05 * n_resamples:
        warnings.warn(f"{failed} of {n_resamples} bootstrap resamples could not be fitted; "
                      "intervals use the rest")
    return np.array([r if r is not None else np.full(width, np.nan) for r in rows])


def interval(point: float, samples: np.ndarray, level: float) -> Estimate:
    """The percentile interval of `samples` (NaNs ignored) around `point`."""
    tail = 100 * (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN bounds
        low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return Estimate(float(point), float(low), float(high), level)


def estimates(names: list[str], point: np.ndarray, samples: np.ndarray,
              level: float) -> dict[str, Estimate]:
    """One Estimate per named column of `samples` (point[i] is column i's full-data value)."""
    return {name: interval(point[i], samples[:, i], level) for i, name in enumerate(names)}


def predictive(predict: Callable[[np.ndarray], np.ndarray], point: np.ndarray,
               samples: np.ndarray, level: float) -> list[Estimate]:
    """Bands for predictions: predict(params) for the full-data fit and for each resample."""
    central = np.atleast_1d(predict(point))
    finite = samples[np.all(np.isfinite(samples), axis=1)]
    draws = np.array([np.atleast_1d(predict(row)) for row in finite]).reshape(-1, len(central))
    return [interval(central[i], draws[:, i], level) for i in range(len(central))]
