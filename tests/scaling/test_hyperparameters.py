"""scaling.hyperparameters: the per-size optimum from a grid line (the parabola's vertex, the
edges flagged) and the power law of a hyperparameter against N and D with t intervals, on
synthetic data with known answers."""
import math

import numpy as np
import pytest

from scaling.hyperparameters import fit_hyperparameter_law, grid_optimum

GRID = np.array([1e-3, 3e-3, 1e-2, 3e-2, 1e-1])


def _bowl(values, optimum, floor=2.0, width=0.3):
    """A loss quadratic in log value with its minimum at `optimum`."""
    return floor + width * (np.log(values) - math.log(optimum)) ** 2


def test_the_parabola_vertex_recovers_the_optimum_between_grid_values():
    shuffled = GRID[[3, 0, 4, 2, 1]]
    found = grid_optimum(shuffled, _bowl(shuffled, 0.007))
    assert found.status == "vertex" and found.bracketed
    assert found.grid_value == 1e-2  # the grid's best, 0.007 lies between 3e-3 and 1e-2
    assert found.value == pytest.approx(0.007, rel=1e-9)
    three = grid_optimum(GRID[1:4], _bowl(GRID[1:4], 0.013))  # the ladder's line of three
    assert three.status == "vertex" and three.value == pytest.approx(0.013, rel=1e-9)


def test_a_diverged_neighbour_keeps_the_grid_value_and_ties_split_the_difference():
    losses = _bowl(GRID, 0.01)
    losses[3] = math.inf  # 3e-2 diverged: bracketed, but no parabola through it
    assert grid_optimum(GRID, losses).status == "grid"
    assert grid_optimum(GRID, losses).value == 1e-2
    tie = grid_optimum(GRID[:3], [2.1, 2.0, 2.0])  # the optimum lies between the tied two
    assert tie.status == "vertex" and tie.value == pytest.approx(math.sqrt(3e-3 * 1e-2))
    assert grid_optimum(GRID[:3], [2.0, 2.0, 2.0]).status == "low edge"  # flat: unbracketed


def test_an_optimum_at_the_edge_of_the_values_tried_is_flagged_as_a_bound():
    low = grid_optimum(GRID[1:4], _bowl(GRID[1:4], 1e-4))
    assert (low.status, low.value, low.bracketed) == ("low edge", 3e-3, False)
    high = grid_optimum(GRID[:3], _bowl(GRID[:3], 1.0))
    assert (high.status, high.value, high.bracketed) == ("high edge", 1e-2, False)
    # the lowest value diverging does not make the best bracketed from below
    assert grid_optimum(GRID[:3], [math.inf, 2.0, 2.1]).status == "grid"
    assert grid_optimum([1e-2], [2.0]).status == "single value"


def test_bad_lines_are_refused():
    with pytest.raises(ValueError, match="every run diverged"):
        grid_optimum(GRID[:2], [math.inf, math.nan])
    with pytest.raises(ValueError, match="distinct, finite and positive"):
        grid_optimum([0.0, 0.1], [2.0, 2.1])
    with pytest.raises(ValueError, match="one loss per evaluated value"):
        grid_optimum(GRID, [2.0])


def _noisy_law(rng, n, d=None, a=0.8, b=-0.35, c=-0.2, sigma=0.1):
    log_h = math.log(a) + b * np.log(n) + (0 if d is None else c * np.log(d))
    return np.exp(log_h + rng.normal(0, sigma, len(n)))


def test_the_lr_law_recovers_a_known_exponent_within_its_interval():
    rng = np.random.default_rng(0)
    n = np.geomspace(2e4, 2e8, 6)
    law = fit_hyperparameter_law(_noisy_law(rng, n), {"N": n})
    b = law.exponents["N"]
    assert b.low < -0.35 < b.high and b.value == pytest.approx(-0.35, abs=0.05)
    assert b.high - b.low < 0.15  # 4 orders of magnitude of N pin the slope
    assert law.coefficient.low < law.coefficient.value < law.coefficient.high
    assert law.dof == 4 and law.formula("lr").startswith("lr = ")
    predicted = law.predict(N=1e9)  # one decade beyond the sizes fitted
    assert predicted.low < 0.8 * 1e9 ** -0.35 < predicted.high


def test_the_t_interval_covers_the_true_exponent_at_its_level():
    """Over many noisy 4-size ladders the 95% interval covers the true slope ~95% of the time
    (a bootstrap over 4 sizes would undercover)."""
    rng = np.random.default_rng(1)
    n = np.array([2.5e4, 5.6e4, 1e5, 2.2e5])
    covered = [fit_hyperparameter_law(_noisy_law(rng, n, sigma=0.3), {"N": n}).exponents["N"]
               for _ in range(400)]
    rate = np.mean([e.low < -0.35 < e.high for e in covered])
    assert 0.92 < rate < 0.98


def test_the_lr_law_in_n_and_d_separates_the_two_exponents():
    rng = np.random.default_rng(2)
    n = np.repeat(np.geomspace(1e6, 1e8, 4), 3)
    d = 20 * n * np.tile([1.0, 4.0, 16.0], 4)
    law = fit_hyperparameter_law(_noisy_law(rng, n, d, sigma=0.05), {"N": n, "D": d})
    for name, truth in (("N", -0.35), ("D", -0.2)):
        assert law.exponents[name].low < truth < law.exponents[name].high, name
    assert law.predict(N=3e8, D=6e9).value == pytest.approx(0.8 * 3e8**-0.35 * 6e9**-0.2,
                                                             rel=0.3)


def test_too_few_sizes_or_inseparable_predictors_are_refused():
    with pytest.raises(ValueError, match="2 distinct N value"):
        fit_hyperparameter_law([1e-2, 3e-3, 1e-2], {"N": [1e5, 1e6, 1e6]})
    n = np.geomspace(1e5, 1e7, 4)
    with pytest.raises(ValueError, match="collinear"):
        fit_hyperparameter_law(n**-0.3, {"N": n, "D": 20 * n})  # a fixed tokens per parameter
    with pytest.raises(ValueError, match="not positive"):
        fit_hyperparameter_law([0.0, 0.1, 0.3], {"N": n[:3]})
    with pytest.raises(ValueError, match="predict needs N"):
        fit_hyperparameter_law(n**-0.3 * [1.0, 1.1, 0.9, 1.0], {"N": n}).predict(D=1e9)
