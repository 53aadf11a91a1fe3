"""Coordinate-descent tuning of every hyperparameter of an optimizer (Wen et al. 2025,
"Fantastic Pretraining Optimizers and Where to Find Them", Sec. 3: from a default point, vary
one hyperparameter at a time over a declared grid and keep a change only if it helps).

A `SearchSpace` declares, per optimizer, each hyperparameter's ordered grid (a sweep point key:
a shorthand such as `lr` or a dotted config field such as `optimizer.adamw.b2`) and the start
point. Each round evaluates the current point's neighbours, one grid step along every
coordinate, and moves along the single coordinate whose neighbour is best, if it beats the
current point by more than `threshold` (the measured seed noise); the search stops when no
move does, or after `max_moves` moves. The search is a pure function of the losses measured so
far: the caller trains the points it asks for (lm/study/tuning.py, as one lm.sweep root) and
calls it again, so a rerun replays the same decisions from finished runs (resumable), and a
run that failed or diverged counts as an infinite loss (failure-isolated).

`sensitivity` reads, for each hyperparameter, the loss against its value with the others at the
best point: the per-hyperparameter stability curves of Zhao et al. 2024 ("Deconstructing What
Makes a Good Optimizer for Language Models") come from exactly these one-at-a-time sweeps.
"""
import dataclasses
import math

import numpy as np

from lm.errors import SweepError
from lm.sweep.spec import format_value


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Ordered grids of an optimizer's hyperparameters and the point the search starts from."""
    grids: dict      # point key -> ordered values
    start: dict      # point key -> its start value (one of the grid's)

    def __post_init__(self):
        for key, grid in self.grids.items():
            if not grid:
                raise SweepError(f"the grid of {key!r} is empty")
            if key not in self.start:
                raise SweepError(f"the search space has no start value for {key!r}")
            if not any(_same(self.start[key], v) for v in grid):
                raise SweepError(f"the start value {key}={self.start[key]!r} is not in its grid "
                                 f"{list(grid)}")
        extra = set(self.start) - set(self.grids)
        if extra:
            raise SweepError(f"start values without a grid: {', '.join(sorted(extra))}")

    def neighbours(self, point: dict) -> list[tuple[str, dict]]:
        """(key, point one grid step away along key) for every key and direction."""
        found = []
        for key, grid in self.grids.items():
            i = next(i for i, v in enumerate(grid) if _same(point[key], v))
            for j in (i - 1, i + 1):
                if 0 <= j < len(grid):
                    found.append((key, {**point, key: grid[j]}))
        return found

    def line(self, point: dict, key: str) -> list[dict]:
        """Every grid value of `key` with the other coordinates at `point`."""
        return [{**point, key: v} for v in self.grids[key]]


@dataclasses.dataclass(frozen=True)
class Move:
    key: str
    value: object
    loss: float      # the loss at the new point
    gain: float      # the previous point's loss minus this one


@dataclasses.dataclass(frozen=True)
class Result:
    best: dict               # the chosen point (the space's keys only)
    loss: float
    moves: list              # Move per accepted step, in order
    losses: dict             # point_id -> loss of every evaluated point
    converged: bool          # no neighbour beat the threshold (else: max_moves reached)


def point_id(point: dict) -> tuple:
    return tuple(sorted((k, format_value(v)) for k, v in point.items()))


def coordinate_descent(space: SearchSpace, losses: dict, *, threshold: float | None,
                       max_moves: int = 20, line_keys: tuple = ()) -> Result | list[dict]:
    """Best-neighbour coordinate descent from `space.start` (see the module docstring), replayed
    over the known `losses` (point_id -> loss; inf for a failed run): the Result, or the points
    whose losses the next decision needs. `line_keys` are searched over their whole grid at each
    round's point (a coarse knob such as Simplified-AdEMAMix's alpha), the other keys one grid
    step each way. At most `max_moves` moves; the final point's neighbours are always
    evaluated (its sensitivity curves). `threshold` None: the seed noise is not measured yet
    (a move cannot be decided)."""
    current, moves = dict(space.start), []
    while True:
        candidates = space.neighbours(current) + [
            (key, p) for key in line_keys for p in space.line(current, key)
            if not _same(p[key], current[key])]
        needed = {point_id(p): p for p in [current] + [p for _, p in candidates]}
        missing = [p for pid, p in needed.items() if pid not in losses]
        if missing or threshold is None:
            return missing
        if not threshold >= 0:
            raise SweepError(f"tuning threshold {threshold} must be >= 0 (the seed noise)")
        here = _as_loss(losses[point_id(current)])
        key, best = min(candidates, key=lambda c: _as_loss(losses[point_id(c[1])]),
                        default=(None, current))
        gain = here - _as_loss(losses[point_id(best)])
        if key is None or not gain > threshold:
            return Result(current, here, moves, losses, converged=True)
        if len(moves) == max_moves:
            return Result(current, here, moves, losses, converged=False)
        moves.append(Move(key, best[key], _as_loss(losses[point_id(best)]), gain))
        current = best


def sensitivity(space: SearchSpace, result: Result) -> list[dict]:
    """Rows (key, value, loss, best) of every evaluated point that differs from the best point
    in one coordinate only (or is it), grid order within each key."""
    rows = []
    for key, grid in space.grids.items():
        for value in grid:
            loss = result.losses.get(point_id({**result.best, key: value}))
            if loss is not None:
                rows.append({"key": key, "value": value, "loss": loss,
                             "best": _same(value, result.best[key])})
    return rows


def seed_noise(losses: list[float]) -> float:
    """The sample standard deviation of one setting's losses over seeds (NaN for fewer than
    two finite ones)."""
    finite = [v for v in losses if math.isfinite(v)]
    return float(np.std(finite, ddof=1)) if len(finite) >= 2 else math.nan


def difference_threshold(noise: float, z: float = 1.0) -> float:
    """The smallest loss difference between two single runs that exceeds the seed noise: z
    standard deviations of a difference of two runs, z sqrt(2) sigma."""
    return z * math.sqrt(2) * noise


def _as_loss(value) -> float:
    value = float(value) if value is not None else math.inf
    return value if math.isfinite(value) else math.inf


def _same(a, b) -> bool:
    return format_value(a) == format_value(b)
