"""lm.study.tune: coordinate descent on known loss surfaces (it finds the minimum, moves only
past the noise threshold, replays from partial results, avoids failed runs), its sensitivity
rows, and the sweep keys it tunes (bare optimizer hyperparameters, warmup as a fraction)."""
import math

import pytest

from configs import base
from lm.errors import SweepError
from lm.study import tune
from lm.sweep.spec import Sweep, expand

GRIDS = {"lr": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "b2": [0.9, 0.95, 0.99, 0.999],
         "wd": [0.0, 0.1, 0.3]}


def bowl(point) -> float:
    """A separable surface with its minimum at lr 3e-2, b2 0.99, wd 0.1."""
    return (math.log10(point["lr"] / 3e-2) ** 2 + 10 * (point["b2"] - 0.99) ** 2
            + (point["wd"] - 0.1) ** 2)


def search(loss_fn, space, *, threshold=0.0, max_moves=20, line_keys=()):
    """Runs the search to its end, evaluating what it asks for; returns (result, rounds)."""
    losses, rounds = {}, 0
    while True:
        result = tune.coordinate_descent(space, losses, threshold=threshold,
                                         max_moves=max_moves, line_keys=line_keys)
        if isinstance(result, tune.Result):
            return result, rounds
        rounds += 1
        losses.update({tune.point_id(p): loss_fn(p) for p in result})


def test_coordinate_descent_reaches_the_minimum_and_its_neighbours_are_measured():
    space = tune.SearchSpace(GRIDS, {"lr": 1e-3, "b2": 0.9, "wd": 0.3})
    result, rounds = search(bowl, space)
    assert result.best == {"lr": 3e-2, "b2": 0.99, "wd": 0.1} and result.converged
    assert result.loss == pytest.approx(bowl(result.best))
    assert [m.key for m in result.moves].count("lr") == 3  # 1e-3 -> 3e-3 -> 1e-2 -> 3e-2
    assert all(m.gain > 0 for m in result.moves) and rounds == len(result.moves) + 1
    rows = tune.sensitivity(space, result)  # every neighbour of the best point was measured
    for key in GRIDS:
        line = [r for r in rows if r["key"] == key]
        assert len(line) >= 2 and sum(r["best"] for r in line) == 1
        assert min(line, key=lambda r: r["loss"])["best"]


def test_a_move_must_beat_the_threshold_and_max_moves_stops_the_search():
    space = tune.SearchSpace(GRIDS, {"lr": 1e-2, "b2": 0.99, "wd": 0.1})
    # lr 3e-2 gains log10(3)^2 = 0.228 over 1e-2: a threshold above that keeps the start
    assert search(bowl, space, threshold=0.3)[0].best["lr"] == 1e-2
    assert search(bowl, space, threshold=0.2)[0].best["lr"] == 3e-2
    far = tune.SearchSpace(GRIDS, {"lr": 1e-3, "b2": 0.9, "wd": 0.3})
    result, _ = search(bowl, far, max_moves=2)
    assert len(result.moves) == 2 and not result.converged
    assert tune.point_id(result.best) in result.losses  # and its neighbours were evaluated
    assert all(tune.point_id(p) in result.losses for _, p in far.neighbours(result.best))


def test_the_search_replays_from_partial_losses_and_asks_only_for_what_is_missing():
    space = tune.SearchSpace(GRIDS, {"lr": 1e-3, "b2": 0.9, "wd": 0.3})
    first = tune.coordinate_descent(space, {}, threshold=None)
    assert len(first) == 1 + 1 + 1 + 1  # the start and one neighbour per key (all at edges)
    known = {tune.point_id(p): bowl(p) for p in first[:2]}
    assert tune.coordinate_descent(space, known, threshold=0.0) == first[2:]
    full, _ = search(bowl, space)
    again = tune.coordinate_descent(space, dict(full.losses), threshold=0.0)
    assert again.best == full.best and again.moves == full.moves


def test_failed_runs_count_as_infinite_and_line_keys_search_their_whole_grid():
    space = tune.SearchSpace(GRIDS, {"lr": 1e-2, "b2": 0.99, "wd": 0.1})

    def failing(point):  # lr 3e-2 diverges
        return math.inf if point["lr"] == 3e-2 else bowl(point)

    result, _ = search(failing, space)
    assert result.best["lr"] == 1e-2
    lined, rounds = search(bowl, tune.SearchSpace(GRIDS, {"lr": 1e-3, "b2": 0.99, "wd": 0.1}),
                           line_keys=("lr",))
    assert lined.best["lr"] == 3e-2 and len(lined.moves) == 1 and rounds == 2


def test_noise_threshold_is_the_spread_of_a_difference_of_two_runs():
    sigma = tune.seed_noise([2.0, 2.1, 2.2])
    assert sigma == pytest.approx(0.1)
    assert tune.difference_threshold(sigma) == pytest.approx(0.1 * math.sqrt(2))
    assert math.isnan(tune.seed_noise([2.0, math.inf]))


@pytest.mark.parametrize("grids, start, message", [
    ({"lr": []}, {"lr": 1e-3}, "the grid of 'lr' is empty"),
    ({"lr": [1e-3]}, {}, "no start value for 'lr'"),
    ({"lr": [1e-3]}, {"lr": 2e-3}, "not in its grid"),
    ({"lr": [1e-3]}, {"lr": 1e-3, "b2": 0.9}, "start values without a grid: b2"),
])
def test_bad_search_spaces_are_refused(grids, start, message):
    with pytest.raises(SweepError, match=message):
        tune.SearchSpace(grids, start)


def test_bare_hyperparameter_keys_set_the_runs_own_optimizer_section():
    config = base.get_config()
    config.train.steps = 200
    runs = expand(Sweep(config, [{"optimizer": "soap", "b2": 0.99, "warmup": 0.25,
                                  "grad_clip": 0.5, "rest_lr_multiplier": 0.3},
                                 {"optimizer": "adamw", "b2": 0.999, "warmup": 0.1}]))
    soap, adamw = (r.config for r in runs)
    assert soap.optimizer.soap.b2 == 0.99 and soap.optimizer.adamw.b2 == 0.95
    assert soap.optimizer.soap.rest_lr_multiplier == 0.3 and soap.optimizer.grad_clip == 0.5
    assert soap.schedule.warmup_fraction == 0.25 and adamw.optimizer.adamw.b2 == 0.999
    assert runs[0].name == "optimizer=soap,warmup=0.25,grad_clip=0.5,b2=0.99,rest_lr_multiplier=0.3"
    with pytest.raises(SweepError, match="'rest_lr_multiplier' is not a config field"):
        expand(Sweep(config, [{"optimizer": "adamw", "rest_lr_multiplier": 0.3}]))
