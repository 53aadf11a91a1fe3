"""Held-out validation: fit on the smaller runs, predict the largest, report the error.

A scaling law is only useful for what it extrapolates, so every fit can be handed a mask of
held-out runs: they are left out of the fit (and of its bootstrap) and predicted instead.
"""
from dataclasses import dataclass

import numpy as np

from scaling.bootstrap import Estimate


@dataclass(frozen=True)
class HeldOut:
    """One held-out prediction: what the fit predicts (with its band) against what was seen."""
    label: str
    x: float            # where it sits on the fit's x axis (compute, model size, x loss)
    actual: float
    predicted: Estimate

    @property
    def relative_error(self) -> float:
        return self.predicted.value / self.actual - 1

    @property
    def covered(self) -> bool:
        return self.predicted.low <= self.actual <= self.predicted.high

    def to_dict(self) -> dict:
        return {"label": self.label, "x": float(self.x), "actual": float(self.actual),
                "predicted": self.predicted.to_dict(), "relative_error": self.relative_error,
                "covered": self.covered}


def largest_runs(compute: np.ndarray, factor: float = 2.0,
                 runs: np.ndarray | None = None) -> np.ndarray:
    """Mask of the runs within `factor` of the largest compute: the ones to hold out. With
    `runs` (the run of each row, for learning-curve points), a run is held out whole when its
    largest compute is within `factor`, so the held-out points are a prediction beyond the
    fitted runs, not an interpolation within one run's curve."""
    compute = np.asarray(compute, dtype=float)
    if factor <= 1:
        raise ValueError(f"holdout factor {factor} must exceed 1 (2 holds out the runs within "
                         "2x of the largest compute)")
    if runs is not None:
        runs = np.asarray(runs)
        final = {run: np.nanmax(compute[runs == run]) for run in np.unique(runs)}
        compute = np.array([final[run] for run in runs])
    mask = compute >= np.nanmax(compute) / factor
    if mask.all():
        count = len(np.unique(runs)) if runs is not None else len(compute)
        raise ValueError(f"all {count} runs are within {factor:g}x of the largest, so none "
                         "would be left to fit. Fix: a holdout_factor closer to 1, or "
                         "holdout_factor=0 (no validation), or add smaller runs")
    return mask


def summarize(heldout: list[HeldOut]) -> dict:
    """Mean and max absolute relative error, and how many actuals fall inside their bands."""
    if not heldout:
        return {"n": 0}
    errors = np.abs([h.relative_error for h in heldout])
    return {"n": len(heldout), "mean_abs_relative_error": float(errors.mean()),
            "max_abs_relative_error": float(errors.max()),
            "covered": int(sum(h.covered for h in heldout))}
