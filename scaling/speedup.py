"""How much less data an optimizer needs than a baseline (AdamW) for the same loss, measured as
Wen et al. 2025 and Vyas et al. 2024 measure it.

Effective-data speedup (Wen et al. 2025, "Fantastic Pretraining Optimizers and Where to Find
Them", arXiv 2509.02046, Sec. 3.3): at one model size, fit the baseline's final loss against its
training data over several budgets (1, 2, 4, 8x Chinchilla there, the lr re-tuned at each),

    L(D) = E + B D^-beta,

and read off the data the baseline would need for another optimizer's final loss L_x after D_x
tokens: D(L_x) = (B / (L_x - E))^(1/beta), speedup D(L_x) / D_x (infinite at or below E). A
speedup whose D(L_x) lies outside the baseline's measured budgets is an extrapolation and is
labelled so. The interval is a parametric bootstrap over seed noise: every loss is redrawn with
its measured seed standard deviation and the law refitted.

Steps to target (Vyas et al. 2024, arXiv 2409.11321, Sec. 6): the optimizer is trained (and its
schedule annealed) on shortened runs; the fraction of the baseline's steps at which its annealed
final loss equals the baseline's final loss is interpolated between those runs.
"""
import math
from typing import NamedTuple

import numpy as np

from scaling.bootstrap import Estimate, interval

EXPONENTS = np.linspace(0.01, 2.0, 200)  # the beta grid of fit_data_law


def fit_data_law(tokens, loss) -> np.ndarray:
    """(E, B, beta) of L(D) = E + B D^-beta by least squares with E, B >= 0: solved in closed
    form for every beta on EXPONENTS at once and the best beta kept (deterministic; no local
    optima)."""
    tokens, loss = np.asarray(tokens, dtype=float), np.asarray(loss, dtype=float)
    if len(np.unique(tokens)) < 3 or not np.all(np.isfinite(loss)):
        raise ValueError(f"a loss-vs-data law needs finite losses at 3 or more budgets; got "
                         f"{len(np.unique(tokens))} budget(s)")
    x = (tokens / tokens.min())[None, :] ** -EXPONENTS[:, None]   # betas x budgets
    xc, yc = x - x.mean(axis=1, keepdims=True), loss - loss.mean()
    b = np.maximum((xc * yc).sum(axis=1) / (xc * xc).sum(axis=1), 0.0)
    e = loss.mean() - b * x.mean(axis=1)
    through_zero = (x * loss).sum(axis=1) / (x * x).sum(axis=1)  # the fit with E held at 0
    b, e = np.where(e < 0, np.maximum(through_zero, 0.0), b), np.maximum(e, 0.0)
    sse = ((e[:, None] + b[:, None] * x - loss) ** 2).sum(axis=1)
    i = int(np.argmin(sse))
    return np.array([e[i], b[i] * tokens.min() ** EXPONENTS[i], EXPONENTS[i]])


def data_for_loss(theta, loss) -> float:
    """D at which E + B D^-beta reaches `loss`; inf at or below E (or with B = 0)."""
    e, b, beta = theta
    gap = loss - e
    return float((b / gap) ** (1 / beta)) if gap > 0 and b > 0 else math.inf


class Speedup(NamedTuple):
    estimate: Estimate      # D(L_x) / D_x with its interval
    law: np.ndarray         # the baseline's (E, B, beta)
    needed: float           # D(L_x), tokens
    extrapolated: bool      # D(L_x) lies outside the baseline's measured budgets
    samples: np.ndarray     # the speedup's parametric-bootstrap draws


def effective_data_speedup(tokens, baseline_loss, baseline_noise: float, x_tokens: float,
                           x_loss: float, x_noise: float, *, draws: int = 1000, seed: int = 0,
                           level: float = 0.95) -> Speedup:
    """The speedup of a run of x (loss `x_loss` after `x_tokens`; `x_noise`: the standard
    deviation of that loss, e.g. of a seed mean) over the baseline's losses at `tokens`, each
    with seed standard deviation `baseline_noise`."""
    tokens, baseline_loss = np.asarray(tokens, float), np.asarray(baseline_loss, float)
    theta = fit_data_law(tokens, baseline_loss)
    needed = data_for_loss(theta, x_loss)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(draws):
        redrawn = baseline_loss + rng.normal(0, baseline_noise, len(tokens))
        samples.append(data_for_loss(fit_data_law(tokens, redrawn),
                                     x_loss + rng.normal(0, x_noise)) / x_tokens)
    samples = np.array(samples)
    return Speedup(interval(needed / x_tokens, samples, level), theta, needed,
                   not tokens.min() <= needed <= tokens.max(), samples)


def speedup_slope(n, speedups, samples, level: float = 0.95) -> Estimate:
    """The slope s of log(speedup) = a + s log N across model sizes, with the interval of the
    slopes of the sizes' bootstrap draws (`samples`: draws x sizes; non-finite draws dropped)."""
    log_n = np.log(np.asarray(n, dtype=float))
    if len(log_n) < 2:
        raise ValueError("a speedup-vs-N slope needs 2 or more model sizes")
    central = np.polyfit(log_n, np.log(speedups), 1)[0]
    samples = np.asarray(samples, dtype=float)
    rows = samples[np.all(np.isfinite(samples) & (samples > 0), axis=1)]
    slopes = [np.polyfit(log_n, np.log(row), 1)[0] for row in rows]
    return interval(float(central), np.array(slopes), level)


def annealed_steps_fraction(fractions, losses, target: float) -> tuple[float, str]:
    """(fraction of the baseline's steps, note) at which runs annealed at `fractions` of the
    steps (1.0 included) reach `target`, interpolated linearly in log steps between the two
    runs that bracket it. Outside the runs: (nan, "not reached") when even the full run ends
    above the target, (nan, "below <smallest fraction>") when the shortest run is already
    below it."""
    order = np.argsort(fractions)
    fractions, losses = np.asarray(fractions, float)[order], np.asarray(losses, float)[order]
    if losses[-1] > target:
        return math.nan, "not reached"
    if losses[0] <= target:
        return math.nan, f"below {fractions[0]:g}"
    i = int(np.flatnonzero(losses <= target)[0])
    log_f = np.log(fractions[i - 1:i + 1])
    t = (losses[i - 1] - target) / (losses[i - 1] - losses[i])
    return float(np.exp(log_f[0] + t * (log_f[1] - log_f[0]))), "interpolated"
