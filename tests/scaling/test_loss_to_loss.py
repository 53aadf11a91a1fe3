"""scaling/loss_to_loss.py on Brandfonbrener et al.'s runs (tests/fixtures/loss_to_loss_*.csv, see
tests/fixtures/README.md): their per-dataset offsets E and the 3.3B extrapolation, plus synthetic
recovery, interval coverage and errors."""
import itertools

import numpy as np
import pytest

from scaling import loss_to_loss
from scaling.table import read_csv
from tests import FIXTURES

DATA = FIXTURES
# E of L(N, D) = ((A/N)^(alpha/beta) + B/D)^beta + E per training set (Brandfonbrener et al.).
PUBLISHED_E = {"fineweb-edu-100b": 1.967, "starcoder": 0.845}


@pytest.fixture(scope="module")
def sweep():
    return read_csv(str(DATA / "loss_to_loss_sweep.csv"))


@pytest.fixture(scope="module")
def extrapolation():
    return read_csv(str(DATA / "loss_to_loss_extrapolation.csv"))


def runs_of(table, data):
    rows = table.rows(table["data"] == data)
    return rows.numeric("params"), rows.numeric("tokens"), rows


@pytest.fixture(scope="module")
def offsets(sweep):
    """Each training set's own-loss offset fit (small bootstrap: the tests use E's points)."""
    return {data: loss_to_loss.fit_offset_law(*runs_of(sweep, data)[:2],
                                               runs_of(sweep, data)[2].numeric("val_loss"),
                                               n_bootstrap=10)
            for data in np.unique(sweep["data"])}


def test_offsets_match_the_papers(offsets):
    for data, published in PUBLISHED_E.items():
        assert offsets[data].params["E"].value == pytest.approx(published, abs=0.002), data


def test_train_to_train_extrapolates_to_the_3b_runs(sweep, extrapolation, offsets):
    """Fit on the sweep (<= 4.84e19 FLOPs), predict each 3.3B run's loss (1e21 FLOPs) from the
    3.3B run on the other training set: 30 ordered pairs, mean error ~1% as in the paper."""
    errors = []
    for x, y in itertools.permutations(sorted(offsets), 2):
        x_n, x_d, x_rows = runs_of(sweep, x)
        y_n, y_d, y_rows = runs_of(sweep, y)
        ix, iy = loss_to_loss.pair_by_size(x_n, x_d, y_n, y_d)
        assert len(ix) >= 76
        big_x, big_y = (extrapolation.rows(extrapolation["data"] == s) for s in (x, y))
        fit = loss_to_loss.fit_loss_to_loss(
            x_rows.numeric("val_loss")[ix], y_rows.numeric("val_loss")[iy], offsets[x],
            offsets[y], kind="train_to_train", heldout_x=big_x.numeric("val_loss"),
            heldout_y=big_y.numeric("val_loss"))
        errors.append(abs(fit.heldout[0].relative_error))
    assert np.mean(errors) < 0.012 and max(errors) < 0.03, np.round(errors, 4)


def test_train_to_test_predicts_the_3b_c4_loss(sweep, extrapolation, offsets):
    """fineweb-edu runs: own validation loss -> C4 loss, E_y fitted to their C4 losses."""
    n, d, rows = runs_of(sweep, "fineweb-edu-100b")
    c4 = rows.numeric("eval/c4_val/CrossEntropyLoss")
    c4_offset = loss_to_loss.fit_offset_law(n, d, c4, n_bootstrap=10)
    fit = loss_to_loss.fit_loss_to_loss(
        rows.numeric("val_loss"), c4, offsets["fineweb-edu-100b"], c4_offset,
        kind="train_to_test", heldout_x=extrapolation.rows(
            extrapolation["data"] == "fineweb-edu-100b").numeric("val_loss"),
        heldout_y=extrapolation.rows(extrapolation["data"] == "fineweb-edu-100b").numeric(
            "eval/c4_val/CrossEntropyLoss"))
    assert abs(fit.heldout[0].relative_error) < 0.02
    assert fit.params["E_y"].value < c4.min()


def offset_truth_for_y(theta_x, k, kappa, e_y):
    """If L_x follows eq. 1 at theta_x, then K (L_x - E_x)^kappa + E_y follows it too, with the
    same alpha/beta ratio, exponents times kappa, and A, B scaled by K^(1/(beta kappa))."""
    big_a, big_b, _, alpha, beta = theta_x
    scale = k**(1 / (beta * kappa))
    return np.array([big_a * scale**(beta / alpha), big_b * scale, e_y, alpha * kappa,
                     beta * kappa])


THETA_X = np.array([3e7, 5e8, 2.0, 0.4, 0.45])
SHIFT = (0.6, 1.1, 0.85)  # K, kappa, E_y


def synthetic_pair(seed, noise=0.003):
    n, d = np.meshgrid(np.geomspace(2e7, 1.5e9, 8), np.geomspace(5e8, 5e10, 10))
    n, d = n.ravel(), d.ravel()
    rng = np.random.default_rng(seed)
    clean_x = loss_to_loss.offset_law(n, d, THETA_X)
    clean_y = loss_to_loss.shifted_power_law(clean_x, (SHIFT[0], SHIFT[1], THETA_X[2], SHIFT[2]))
    np.testing.assert_allclose(clean_y, loss_to_loss.offset_law(
        n, d, offset_truth_for_y(THETA_X, *SHIFT)))
    return (n, d, clean_x * np.exp(rng.normal(0, noise, n.size)),
            clean_y * np.exp(rng.normal(0, noise, n.size)))


def test_synthetic_offsets_and_shift_are_recovered():
    n, d, x, y = synthetic_pair(0)
    fx = loss_to_loss.fit_offset_law(n, d, x, n_bootstrap=50, seed=3)
    fy = loss_to_loss.fit_offset_law(n, d, y, n_bootstrap=50, seed=3)
    assert fx.params["E"].value == pytest.approx(THETA_X[2], rel=0.03)
    assert fy.params["E"].value == pytest.approx(SHIFT[2], rel=0.05)
    assert fx.params["alpha"].value == pytest.approx(THETA_X[3], abs=0.05)
    fit = loss_to_loss.fit_loss_to_loss(x, y, fx, fy, kind="train_to_test")
    assert fit.params["kappa"].value == pytest.approx(SHIFT[1], abs=0.05)
    assert fit.params["K"].value == pytest.approx(SHIFT[0], rel=0.1)
    np.testing.assert_allclose(fit.samples[:, 2], fx.samples[:, 2])  # E_x draws reused


@pytest.mark.slow
def test_shift_intervals_cover_the_truth_at_about_their_level():
    """90% intervals for kappa and K over 25 synthetic pairs (offset bootstraps included)."""
    hits = np.zeros(2)
    for seed in range(25):
        n, d, x, y = synthetic_pair(100 + seed, noise=0.005)
        fx, fy = (loss_to_loss.fit_offset_law(n, d, loss, n_bootstrap=100, seed=seed,
                                              level=0.9, keep_best=4, resample_starts=0)
                  for loss in (x, y))
        fit = loss_to_loss.fit_loss_to_loss(x, y, fx, fy, kind="train_to_test")
        hits += [fit.params[k].low <= t <= fit.params[k].high
                 for k, t in (("K", SHIFT[0]), ("kappa", SHIFT[1]))]
    assert np.all(hits >= 18), hits


def test_pairing_by_size_and_its_errors():
    ix, iy = loss_to_loss.pair_by_size(np.array([1e6, 2e6, 4e6]), np.array([1e9, 1e9, 1e9]),
                                       np.array([4e6, 1e6 * (1 + 1e-9), 8e6]),
                                       np.array([1e9, 1e9, 1e9]))
    np.testing.assert_array_equal(ix, [0, 2])
    np.testing.assert_array_equal(iy, [1, 0])
    with pytest.raises(ValueError, match="share \\(N, D\\)"):
        loss_to_loss.pair_by_size(np.array([1e6, 1e6]), np.array([1e9, 1e9]),
                                  np.array([1e6]), np.array([1e9]))


def test_degenerate_input_gets_a_clear_error():
    n, d, x, y = synthetic_pair(0)
    with pytest.raises(ValueError, match="at or below their fitted offset"):
        loss_to_loss.fit_shift(x, y, e_x=x.min() + 0.01, e_y=0.5)
    with pytest.raises(ValueError, match="1 distinct model size N"):
        loss_to_loss.fit_offset_law(np.full_like(n, 1e8), d, x, n_bootstrap=1)
    with pytest.raises(ValueError, match="5 points for 5 parameters"):
        loss_to_loss.fit_offset_law(n[:5], d[:5], x[:5], n_bootstrap=1)
    small = loss_to_loss.fit_offset_law(n, d, x, n_bootstrap=2)
    big = loss_to_loss.fit_offset_law(n, d, y, n_bootstrap=3)
    with pytest.raises(ValueError, match="different bootstrap sizes"):
        loss_to_loss.fit_loss_to_loss(x, y, small, big, kind="train_to_test")
