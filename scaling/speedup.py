"""How much less data or compute an optimizer needs than a baseline (AdamW) for the same loss.

Effective-data speedup (Wen et al. 2025, "Fantastic Pretraining Optimizers and Where to Find
Them", arXiv 2509.02046): fit the baseline's final loss against its training data, then
read off the data D_base(N, L) the baseline would need to reach another optimizer's final loss L
at the same model size N; the speedup is D_base / D_X. Wen et al. fit L(D) per model size on 1,
2, 4, 8x Chinchilla budgets; here the baseline's runs at several budgets and sizes share one
Chinchilla law L(N, D) = E + A/N^alpha + B/D^beta (scaling/chinchilla.py), which inverts to

    D_base(N, L) = (B / (L - E - A/N^alpha))^(1/beta),

infinite where L lies at or below the baseline's infinite-data loss at that size.

Steps to target (the SOAP paper's comparison, Vyas et al. 2024, arXiv 2409.11321, Fig. 1):
the first step at which an optimizer's validation loss reaches the baseline's final loss,
interpolated between evaluations, over the baseline's step count. Within one run the loss before
the end of a decaying schedule has not been annealed, so this ratio overstates the steps an
optimizer needs (it is conservative); the effective-data speedup compares finished runs.
"""
import numpy as np

from scaling.bootstrap import Estimate, predictive
from scaling.chinchilla import ChinchillaFit
from scaling.critical_batch import steps_to_target


def data_to_reach(n, loss, theta) -> np.ndarray:
    """D at which L(N, D) with natural Chinchilla parameters theta = (A, B, E, alpha, beta)
    reaches `loss`; inf where no amount of data does."""
    big_a, big_b, e, alpha, beta = theta[:5]
    gap = np.asarray(loss, dtype=float) - e - big_a / np.asarray(n, dtype=float)**alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap > 0, (big_b / gap)**(1 / beta), np.inf)


def effective_data_speedup(baseline: ChinchillaFit, n, tokens, loss) -> list[Estimate]:
    """D_base(N, L) / D for runs of N parameters that reached `loss` on `tokens` tokens, with
    the baseline fit's bootstrap band (inf: beyond anything the baseline law reaches)."""
    tokens = np.asarray(tokens, dtype=float)
    return predictive(lambda theta: data_to_reach(n, loss, theta) / tokens, baseline.point,
                      baseline.samples, baseline.level)


def steps_to_target_ratio(steps, loss, target: float, baseline_steps: float) -> float:
    """Steps an optimizer's validation curve (steps, loss) takes to reach `target`, over
    `baseline_steps`; NaN if it never reaches it. Validation losses are averages over fixed
    windows, so they are not smoothed (window 1)."""
    return steps_to_target(steps, loss, target, window=1) / baseline_steps
