"""Guardrails of every scaling-law fit: what it used, and refusals or warnings where its numbers
cannot be trusted.

A fit on a small ladder runs and prints numbers whether or not they mean anything: held out
by the default factor, a 4-size ladder leaves 2 runs to fit, and the bootstrap over 2 runs has
3 distinct resamples, so every interval collapses onto its own estimate. Every law of
scaling/laws.py goes through these checks, so `python -m scaling.fit`, the study
(lm/study/fits.py) and Python callers see the same:

Refused (ValueError; scaling.fit prints `error: ...` and exits 2):
- fewer than MIN_RUNS runs left to fit after the hold-out (`require_runs`): intervals from
  resampling 2 runs mean nothing. The error names the fix: more sizes, or a holdout_factor that
  holds out fewer runs (with the value that holds out the largest alone), or holdout_factor=0.
- every run within the holdout factor, so nothing is left to fit
  (scaling/validation.py `largest_runs`).
Warned (`warnings`: fit.json's and `laws.record`'s "warnings", report.md's Warnings section,
scaling.fit's stderr, each line starting `warning: `), as the fit itself is still made:
- held-out validation was asked (a holdout_factor or a held-out table) but predicted nothing,
  e.g. no held-out run lies on the compute frontier: the fit is not validated.
- "degenerate fit: ": a parameter's point estimate at (or beyond) an edge of its bootstrap
  interval, its interval of zero width, or the estimate on a bound of the optimizer (E >= 0, the
  offset law's exponents >= 1e-3): the runs do not pin that parameter down.
"""
from dataclasses import dataclass

import numpy as np

from scaling.bootstrap import Estimate

MIN_RUNS = 3
# An estimate within this fraction of its interval's width from an edge is at the edge. In a
# fit the runs pin down, the estimate sits inside its percentile interval; when a large share
# of the resamples reproduce it and the rest fall on one side, it sits on the edge exactly.
EDGE_TOLERANCE = 1e-3
# An estimate within this distance of a bound is on it: E is a loss in nats and the bounded
# exponents are O(0.1-1), so 1e-3 is far below any value a fit that resolves them gives.
BOUND_TOLERANCE = 1e-3
_LISTED = 8  # at most this many runs are named in a line (fit.json names them all)


@dataclass(frozen=True)
class Usage:
    """The runs and points one fit used and the runs it held out (report.md's "Runs used")."""
    fit: str                        # which fit, e.g. "compute law"
    fitted: tuple[str, ...]         # the runs fitted, one name each
    points: int                     # points fitted (a learning curve gives several per run)
    held: tuple[str, ...]           # the runs held out
    held_points: int
    hold_out: str                   # how runs were held out, e.g. "holdout_factor=2 (...)"
    alone_factor: float | None      # a holdout_factor holding out fewer runs, the largest
    # alone, leaving MIN_RUNS or more to fit (None: no such factor, or no factor held them out)

    def summary(self) -> str:
        """One line: "compute law: fitted 3 runs (a, b, c), 15 points; held out 1 run (d), 5
        points, by holdout_factor=2 (...)"."""
        held = (f"held out {named_runs(self.held)}, {_count(self.held_points, 'point')}, by "
                f"{self.hold_out}" if self.held else f"no runs held out ({self.hold_out})")
        fitted = f"fitted {named_runs(self.fitted)}, {_count(self.points, 'point')}"
        return f"{self.fit}: {fitted}; {held}"

    def to_dict(self) -> dict:
        return {"fit": self.fit, "fitted_runs": len(self.fitted), "fitted_points": self.points,
                "fitted": list(self.fitted), "held_out_runs": len(self.held),
                "held_out_points": self.held_points, "held_out": list(self.held),
                "hold_out": self.hold_out}


def named_runs(names) -> str:
    """"3 runs (a, b, c)"; the names only when there are at most _LISTED."""
    named = f" ({', '.join(names)})" if 0 < len(names) <= _LISTED else ""
    return _count(len(names), "run") + named


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


def usage_of(fit: str, runs: np.ndarray, held: np.ndarray, size: np.ndarray, hold_out: str,
          by_factor: bool) -> Usage:
    """The Usage of a fit whose rows belong to `runs` (a name per row; a run's learning-curve
    points share it), `held` the held-out rows, `size` what the hold-out ranks runs by (compute
    or model size), `by_factor` whether a holdout_factor chose them. Runs are listed from the
    smallest to the largest."""
    runs, held, size = np.asarray(runs).astype(str), np.asarray(held, bool), np.asarray(size)
    final = {run: np.nanmax(size[runs == run]) for run in np.unique(runs)}

    def ordered(names):
        return tuple(str(run) for run in sorted(set(names), key=lambda run: (final[run], run)))

    held_runs = ordered(runs[held])
    return Usage(fit, ordered(runs[~held]), int((~held).sum()), held_runs, int(held.sum()),
                 hold_out, _alone_factor(final, len(held_runs)) if by_factor else None)


def _alone_factor(final: dict, n_held: int) -> float | None:
    """A holdout_factor between 1 and largest / second-largest run size (`final`: run -> its
    size; the factor is their geometric middle, two decimals) that holds out only the largest
    run(s), if that holds out fewer than `n_held` and leaves MIN_RUNS to fit."""
    top = max(final.values())
    rest = [s for s in final.values() if s < top]
    if len(rest) < MIN_RUNS or len(final) - len(rest) >= n_held:
        return None
    factor = round(float(np.sqrt(top / max(rest))), 2)
    return factor if 1 < factor < top / max(rest) else None


def _fewer_held(used: Usage) -> str:
    """How to hold out fewer runs, or "" when that cannot help."""
    if not used.held:
        return ""
    alone = (f"holdout_factor={used.alone_factor:g} holds out only the largest; "
             if used.alone_factor is not None else "")
    return f"hold out fewer runs ({alone}holdout_factor=0, none)"


def require_runs(used: Usage) -> None:
    """A ValueError naming the fix when fewer than MIN_RUNS runs are left to fit."""
    if len(used.fitted) >= MIN_RUNS:
        return
    held = f" after holding out {named_runs(used.held)} by {used.hold_out}" if used.held else ""
    fixes = " or ".join(filter(None, ["train more sizes", _fewer_held(used)]))
    raise ValueError(f"{used.fit}: {named_runs(used.fitted)} left to fit{held}; the bootstrap "
                     f"resamples runs, and fewer than {MIN_RUNS} give intervals that mean "
                     f"nothing. Fix: {fixes}")


def degenerate(estimates: dict[str, Estimate], usages: list[Usage], where: str = "",
               lower_bounds: dict[str, float] | None = None) -> list[str]:
    """A "degenerate fit: ..." warning for each estimate at an edge of its interval (or beyond
    it, or with a zero-width interval) or on its lower bound (`lower_bounds`: parameter ->
    the optimizer's bound); `where` names the fit for laws with several."""
    found = []
    for name, estimate in estimates.items():
        problems = [p for p in (_at_edge(estimate),
                                _on_bound(name, estimate, (lower_bounds or {}).get(name))) if p]
        if problems:
            found.append(f"degenerate fit: {where}{name} = {estimate.value:.4g}, "
                         f"{estimate.level:.0%} interval [{estimate.low:.4g}, "
                         f"{estimate.high:.4g}]: the estimate is {' and '.join(problems)}, so "
                         f"the runs do not pin {name} down. Fix: {_more_data(usages)}")
    return found


def _at_edge(estimate: Estimate) -> str:
    """How the estimate sits at (or beyond) an edge of its interval, or "". Close means within
    EDGE_TOLERANCE of the interval's width and of the value's own size, so that an estimate
    2x above the edge of an interval spanning 12 decades (a scale parameter) is not "at" it."""
    low, value, high = estimate.low, estimate.value, estimate.high
    if not np.isfinite([low, value, high]).all():
        return "without a finite interval"
    if high == low:
        return "alone in an interval of zero width (every resample gave the same value)"
    for edge, side in ((low, "lower"), (high, "upper")):
        if abs(value - edge) <= EDGE_TOLERANCE * min(high - low, max(abs(value), abs(edge))):
            return f"on its interval's {side} edge"
    if value < low:
        return "below its interval"
    return "above its interval" if value > high else ""


def _on_bound(name: str, estimate: Estimate, bound: float | None) -> str:
    if bound is None or abs(estimate.value - bound) > BOUND_TOLERANCE:
        return ""
    return f"on the optimizer's bound {name} >= {bound:g}"


def _more_data(usages: list[Usage]) -> str:
    fewer = [_fewer_held(u) for u in usages if _fewer_held(u)]
    return "train more sizes or longer runs" + (f", or {fewer[0]}" if fewer else "")


def nothing_predicted(usages: list[Usage], validated: bool, predictions: int,
                      why: str) -> list[str]:
    """The warning when held-out validation was asked (`validated`) but made no prediction;
    `why` says which held-out runs the law can predict."""
    if not validated or predictions:
        return []
    held = list(dict.fromkeys(name for u in usages for name in u.held))
    return [(f"held-out validation predicted nothing ({why}; held out: {named_runs(held)}), "
             "so the fit is not validated. Fix: longer runs or a larger size to hold out, or a "
             "held-out table (heldout_table)")]


def check(usages: list[Usage], checked: list[tuple], validated: bool,
          predictions: int, why: str) -> list[str]:
    """Every warning of a fit: `degenerate` for each (estimates, where, lower bounds) of
    `checked`, and `nothing_predicted`."""
    found = [w for estimates, where, bounds in checked
             for w in degenerate(estimates, usages, where, bounds)]
    return found + nothing_predicted(usages, validated, predictions, why)
