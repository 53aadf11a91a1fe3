"""scaling/chinchilla.py: Approach 3 on Besiroglu et al.'s reconstruction of the Chinchilla data
(tests/fixtures/chinchilla_approach3.csv, see tests/fixtures/README.md), synthetic recovery and interval
coverage, Approach 2, the compute-optimal allocation, and errors on degenerate input."""

import numpy as np
import pytest

from scaling import chinchilla
from scaling.bootstrap import resample_indices
from scaling.objective import best_starts, huber_log_objective, minimize_multistart
from scaling.table import read_csv
from tests import FIXTURES

DATA = FIXTURES
# The Huber(1e-3) optimum on the 240 points, and Besiroglu et al. 2024 (Table 1, 95% bootstrap
# intervals in Sec. 3): their point is the least-absolute-deviation limit of the same objective.
OPTIMUM = {"A": 477.8, "B": 2143.0, "E": 1.817, "alpha": 0.3473, "beta": 0.3672}
PUBLISHED = {"A": 482.01, "B": 2085.43, "E": 1.82, "alpha": 0.3478, "beta": 0.3658}
PUBLISHED_INTERVALS = {"A": (285, 744), "B": (1042, 5810)}
HOFFMANN = np.array([406.4, 410.7, 1.69, 0.34, 0.28])  # A, B, E, alpha, beta


@pytest.fixture(scope="module")
def besiroglu_points():
    """N, D = C / 6N and loss of the 240 points Besiroglu et al. fit (5 highest losses out)."""
    table = read_csv(str(DATA / "chinchilla_approach3.csv"))
    loss = table.numeric("loss")
    keep = np.sort(np.argsort(loss, kind="stable")[:240])
    n, c = table.numeric("Model Size")[keep], table.numeric("Training FLOP")[keep]
    return n, c / (6 * n), loss[keep]


def synthetic(seed, theta=HOFFMANN, noise=0.01, sizes=6, budgets=8):
    """Runs on a (N, D) grid around Chinchilla scale, losses times exp(N(0, noise^2))."""
    n, d = np.meshgrid(np.geomspace(5e7, 5e9, sizes), np.geomspace(1e9, 3e11, budgets))
    n, d = n.ravel(), d.ravel()
    rng = np.random.default_rng(seed)
    return n, d, chinchilla.chinchilla_loss(n, d, theta) * np.exp(rng.normal(0, noise, n.size))


def test_besiroglu_point_estimate(besiroglu_points):
    fit = chinchilla.fit_approach3(*besiroglu_points, n_bootstrap=10, keep_best=100)
    for name, value in OPTIMUM.items():
        assert fit.params[name].value == pytest.approx(value, rel=0.01), name
    for name in ("A", "E", "alpha", "beta"):  # the LAD limit differs mostly in B
        assert fit.params[name].value == pytest.approx(PUBLISHED[name], rel=0.01), name
    assert fit.params["B"].value == pytest.approx(PUBLISHED["B"], rel=0.05)
    a, b = fit.params["a"].value, fit.params["b"].value
    assert a + b == pytest.approx(1) and a == pytest.approx(0.5139, abs=1e-3)


@pytest.mark.slow
def test_besiroglu_full_grid_agrees_with_the_screened_grid(besiroglu_points):
    """All 4,500 starts, as Besiroglu et al. run them, land on the same optimum as the 100
    screened starts the fast tests use."""
    full = chinchilla.fit_approach3(*besiroglu_points, n_bootstrap=1)
    screened = chinchilla.fit_approach3(*besiroglu_points, n_bootstrap=1, keep_best=100)
    assert full.n_starts == 4500 and full.n_agree > 1000
    np.testing.assert_allclose(full.point, screened.point, rtol=1e-5)
    for name, value in OPTIMUM.items():
        assert full.params[name].value == pytest.approx(value, rel=0.01), name


@pytest.mark.slow
def test_besiroglu_bootstrap_interval_widths(besiroglu_points):
    """95% percentile intervals over 2,000 resamples: widths within 10% of the published ones
    (Monte Carlo spread of the B width at 2,000 resamples is ~4%)."""
    fit = chinchilla.fit_approach3(*besiroglu_points, n_bootstrap=2000, keep_best=100, seed=0)
    for name, (low, high) in PUBLISHED_INTERVALS.items():
        estimate = fit.params[name]
        width = estimate.high - estimate.low
        assert width == pytest.approx(high - low, rel=0.10), (name, estimate)
        assert estimate.low == pytest.approx(low, rel=0.15)
        assert estimate.high == pytest.approx(high, rel=0.15)


@pytest.mark.slow
def test_bootstrap_starts_find_the_grid_optimum(besiroglu_points):
    """Resamples start from the full-data optimum and 2 grid starts instead of the grid: on
    Chinchilla resamples that reaches the optimum of the 300 best grid starts."""
    n, d, loss = besiroglu_points
    log_n, log_d = np.log(n), np.log(d)
    full_objective = huber_log_objective(chinchilla._log_prediction(log_n, log_d), loss)
    full = minimize_multistart(full_objective, chinchilla.BESIROGLU_GRID, keep_best=100)
    warm = np.vstack([full.x, best_starts(full_objective, chinchilla.BESIROGLU_GRID, 2)])
    rng = np.random.default_rng(0)
    for _ in range(3):
        idx = resample_indices(len(n), rng)
        objective = huber_log_objective(chinchilla._log_prediction(log_n[idx], log_d[idx]),
                                        loss[idx])
        quick = minimize_multistart(objective, warm)
        thorough = minimize_multistart(objective, chinchilla.BESIROGLU_GRID, keep_best=300)
        assert quick.fun <= thorough.fun + 1e-9
        np.testing.assert_allclose(chinchilla._natural(quick.x),
                                   chinchilla._natural(thorough.x), rtol=1e-4)


def test_approach3_recovers_synthetic_parameters():
    """Exponents and E are pinned tightly; A and B trade off against them along a flat ridge
    (a 0.01 change in alpha moves A by ~20% at N ~ 1e9), so they get looser bounds. Coverage
    is the next tests' business."""
    fit = chinchilla.fit_approach3(*synthetic(0, noise=0.003), n_bootstrap=60, keep_best=50)
    tolerances = {"A": 0.5, "B": 0.5, "E": 0.03, "alpha": 0.05, "beta": 0.05}
    for name, truth in zip(chinchilla.PARAMS, HOFFMANN):
        estimate = fit.params[name]
        assert estimate.value == pytest.approx(truth, rel=tolerances[name]), name


def test_heldout_runs_are_left_out_and_predicted():
    n, d, loss = synthetic(1, noise=0.002)
    held = n * d == (n * d).max()
    fit = chinchilla.fit_approach3(n, d, loss, heldout=held, n_bootstrap=40, keep_best=50)
    assert fit.n_points == len(n) - 1
    [check] = fit.heldout
    assert check.actual == loss[held][0] and check.x == pytest.approx(6 * (n * d).max())
    assert abs(check.relative_error) < 0.01


@pytest.mark.slow
def test_approach3_intervals_cover_the_truth_at_about_their_level():
    """90% intervals over 30 synthetic data sets: each parameter covered ~27 times."""
    hits = np.zeros(5)
    for seed in range(30):
        fit = chinchilla.fit_approach3(*synthetic(100 + seed, noise=0.01), n_bootstrap=100,
                                       keep_best=10, resample_starts=0, level=0.9, seed=seed)
        hits += [fit.params[k].low <= t <= fit.params[k].high
                 for k, t in zip(chinchilla.PARAMS, HOFFMANN)]
    coverage = hits / 30
    assert np.all(coverage >= 0.7), coverage
    assert 0.8 <= coverage.mean() <= 0.97, coverage


def test_compute_optimal_allocation_minimises_loss_at_fixed_compute():
    theta = HOFFMANN
    compute = 1e22
    n_opt, d_opt = chinchilla.compute_optimal(compute, theta)
    assert 6 * n_opt * d_opt == pytest.approx(compute)
    n = np.geomspace(n_opt / 3, n_opt * 3, 2001)
    losses = chinchilla.chinchilla_loss(n, compute / (6 * n), theta)
    assert n[np.argmin(losses)] == pytest.approx(n_opt, rel=2e-3)
    a, b, _ = chinchilla.allocation_exponents(theta)
    assert (a, b) == pytest.approx((0.28 / 0.62, 0.34 / 0.62))


def isoflop_runs(seed, theta, noise=0.002):
    """Seven sizes per budget, spread 4x either side of the compute-optimal N."""
    budgets = np.geomspace(1e18, 1e21, 7)
    n = np.concatenate([chinchilla.compute_optimal(c, theta)[0] * np.geomspace(0.25, 4, 7)
                        for c in budgets])
    compute = np.repeat(budgets, 7)
    d = compute / (6 * n)
    rng = np.random.default_rng(seed)
    return n, d, compute, chinchilla.chinchilla_loss(n, d, theta) * np.exp(
        rng.normal(0, noise, n.size))


@pytest.mark.filterwarnings("ignore:.*bootstrap resamples could not be fitted")
def test_approach2_recovers_allocation_exponents_and_predicts_the_largest_budget():
    theta = np.array([400.0, 400.0, 1.7, 0.3, 0.3])  # a = b = 0.5
    n, d, compute, loss = isoflop_runs(0, theta)
    held = compute == compute.max()
    fit = chinchilla.fit_approach2(n, d, compute, loss, heldout=held, n_bootstrap=200)
    assert len(fit.budgets) == 6
    assert fit.params["a"].value == pytest.approx(0.5, abs=0.02)
    assert fit.params["b"].value == pytest.approx(0.5, abs=0.02)
    n_check, d_check = fit.heldout
    true_n = chinchilla.compute_optimal(compute.max(), theta)[0]
    assert n_check.label.startswith("N_opt") and n_check.x == pytest.approx(compute.max())
    assert n_check.predicted.value == pytest.approx(true_n, rel=0.15)
    assert d_check.label.startswith("D_opt")


@pytest.mark.filterwarnings("ignore:.*bootstrap resamples could not be fitted")
def test_approach2_intervals_cover_the_truth_at_about_their_level():
    """Noisy profiles: resamples whose parabola turns concave are dropped (with a warning)."""
    theta = np.array([400.0, 400.0, 1.7, 0.3, 0.3])
    covered = 0
    for seed in range(40):
        fit = chinchilla.fit_approach2(*isoflop_runs(seed, theta, noise=0.005),
                                       n_bootstrap=100, level=0.9, seed=seed)
        covered += fit.params["a"].low <= 0.5 <= fit.params["a"].high
    assert 28 <= covered <= 40


def test_budgets_group_runs_of_nearly_equal_compute():
    labels = chinchilla.group_budgets([1e18, 1.04e18, 0.98e18, 3e18, 3.1e18, 1e19])
    assert len(np.unique(labels)) == 3
    assert labels[0] == labels[1] == labels[2] == pytest.approx(1.0064e18, rel=1e-3)


def test_degenerate_input_gets_a_clear_error():
    n, d, loss = synthetic(0)
    with pytest.raises(ValueError, match="1 distinct model size N"):
        chinchilla.fit_approach3(np.full_like(n, 1e8), d, loss, n_bootstrap=1)
    with pytest.raises(ValueError, match="4 points for 5 parameters"):
        chinchilla.fit_approach3(n[:4], d[:4], loss[:4], n_bootstrap=1)
    bad = loss.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="1 of 48 values of loss are non-finite"):
        chinchilla.fit_approach3(n, d, bad, n_bootstrap=1)
    with pytest.raises(ValueError, match="heldout mask has 3 entries for 48 runs"):
        chinchilla.fit_approach3(n, d, loss, heldout=[True, False, False], n_bootstrap=1)
    n2, d2, c2, l2 = isoflop_runs(0, HOFFMANN)
    two_budgets = c2 <= np.unique(c2)[1]
    with pytest.raises(ValueError, match="2 FLOP budget"):
        chinchilla.fit_approach2(n2[two_budgets], d2[two_budgets], c2[two_budgets],
                                 l2[two_budgets], n_bootstrap=1)
    with pytest.raises(ValueError, match="not convex"):
        chinchilla.isoflop_minimum(np.log([1e8, 2e8, 4e8]), np.array([3.0, 3.5, 3.1]))
