"""scaling/critical_batch.py: steps to a target loss, S(B) = a + b/B, the 20%-overhead critical
batch size and its power laws in N and D, on synthetic sweeps with known answers."""
import numpy as np
import pytest

from scaling import critical_batch, laws
from scaling.table import Table

BATCHES = 2.0 ** np.arange(8, 16)  # tokens per step, 256 .. 32768


def sweep(seed, sizes=(1e6, 4e6, 1.6e7, 6.4e7, 2.56e8), noise=0.03):
    """S(B) = a (1 + B_noise / B) per size with a = 1000 (N/1e6)^0.1, B_noise = 2048 (N/1e6)^0.4,
    so B* = 0.2 B_noise = 409.6 (N/1e6)^0.4 and D* = 1.2 a B_noise ~ N^0.5: B* ~ D*^0.8."""
    n = np.repeat(sizes, len(BATCHES))
    batch = np.tile(BATCHES, len(sizes))
    a, noise_scale = 1000 * (n / 1e6)**0.1, 2048 * (n / 1e6)**0.4
    rng = np.random.default_rng(seed)
    return n, batch, a * (1 + noise_scale / batch) * np.exp(rng.normal(0, noise, n.size))


def test_steps_to_target_interpolates_the_smoothed_running_minimum():
    steps = np.arange(10, 110, 10)
    loss = 5 - steps / 50  # 4.8 .. 3.0
    assert critical_batch.steps_to_target(steps, loss, 4.0, window=1) == pytest.approx(50)
    assert critical_batch.steps_to_target(steps, loss, 3.5, window=1) == pytest.approx(75)
    assert np.isnan(critical_batch.steps_to_target(steps, loss, 2.9, window=1))
    # a trailing mean over 3 points lags a straight line by one logged step
    assert critical_batch.steps_to_target(steps, loss, 4.0, window=3) == pytest.approx(60)
    bumpy = np.array([5.0, 4.0, 4.5, 3.9])  # the best-so-far counts: 4.0 is reached at step 2
    assert critical_batch.steps_to_target([1, 2, 3, 4], bumpy, 4.2, window=1) == \
        pytest.approx(1.8)
    assert critical_batch.reachable_target([bumpy, np.array([5.0, 4.1])], window=1) == 4.1


def test_steps_vs_batch_fit_and_critical_batch_size_are_exact_without_noise():
    a, b = critical_batch.fit_steps_vs_batch(BATCHES, 800 + 4e6 / BATCHES)
    assert (a, b) == pytest.approx((800, 4e6))
    assert critical_batch.critical_batch_size(a, b) == pytest.approx(0.2 * 4e6 / 800)
    overhead = (a + b / 1000) / (b / 1000) - 1  # at B*, 20% more steps than linear scaling
    assert critical_batch.critical_batch_size(a, b) == pytest.approx(1000)
    assert overhead == pytest.approx(0.2)


def test_critical_batch_power_laws_are_recovered_and_the_largest_size_predicted():
    n, batch, steps = sweep(0)
    held = n == n.max()
    fit = critical_batch.fit_critical_batch(n, batch, steps, heldout=held, n_bootstrap=300)
    assert fit.params["N_exponent"].value == pytest.approx(0.4, abs=0.05)
    assert fit.params["D_exponent"].value == pytest.approx(0.8, abs=0.1)
    assert fit.params["N_coef"].low <= 409.6 * 1e6**-0.4 <= fit.params["N_coef"].high
    for s in fit.sweeps:
        assert s.cbs.value == pytest.approx(409.6 * (s.n / 1e6)**0.4, rel=0.15)
        assert s.tokens.value == pytest.approx(1.2 * 1000 * (s.n / 1e6)**0.1 * 2048 *
                                               (s.n / 1e6)**0.4, rel=0.15)
    [check] = fit.heldout
    assert check.x == 2.56e8 and check.actual == pytest.approx(409.6 * 256**0.4, rel=0.15)
    assert abs(check.relative_error) < 0.15


def test_critical_batch_intervals_cover_the_truth_at_about_their_level():
    covered = 0
    for seed in range(60):
        fit = critical_batch.fit_critical_batch(*sweep(100 + seed), n_bootstrap=200, seed=seed,
                                                level=0.9)
        covered += fit.params["N_exponent"].low <= 0.4 <= fit.params["N_exponent"].high
    assert 47 <= covered <= 59


def test_degenerate_sweeps_get_a_clear_error():
    n, batch, steps = sweep(0)
    with pytest.raises(ValueError, match="2 model size\\(s\\) to fit"):
        critical_batch.fit_critical_batch(n[:16], batch[:16], steps[:16], n_bootstrap=1)
    two_batches = np.isin(batch, BATCHES[:2]) | (n > 1e6)
    with pytest.raises(ValueError, match="N=1e\\+06 has 2 distinct batch size"):
        critical_batch.fit_critical_batch(n[two_batches], batch[two_batches],
                                          steps[two_batches], n_bootstrap=1)
    linear = np.where(n == 1e6, 4e6 / batch, steps)  # perfect linear scaling: no overhead
    with pytest.raises(ValueError, match="no overhead over linear scaling"):
        critical_batch.fit_critical_batch(n, batch, linear, n_bootstrap=1)
    with pytest.raises(ValueError, match="steps are non-finite"):
        critical_batch.fit_critical_batch(n, batch, np.where(n == 1e6, np.nan, steps),
                                          n_bootstrap=1)


@pytest.mark.filterwarnings("ignore:.*bootstrap resamples could not be fitted")
def test_a_critical_batch_outside_the_batches_measured_is_called_an_extrapolation():
    """B* = 409.6 and 713 tokens at N = 1e6 and 4e6 lie inside 256..32768 but below batches
    from 1024 up: the fit warns at those two sizes (not at 1.6e7, B* 1242), naming the fix."""
    n, batch, steps = sweep(0, sizes=(1e6, 4e6, 1.6e7), noise=0.0)
    table = Table({"params_non_embedding": n, "batch_tokens": batch, "steps": steps})
    options = laws.FitOptions(bootstrap=50, holdout_factor=0)
    assert not [w for w in laws.cbs(table, "batch_tokens", "steps", options=options).warnings
                if "extrapolation" in w]
    keep = batch >= 1024
    cut = Table({k: np.asarray(table[k])[keep] for k in table.names})
    found = [w for w in laws.cbs(cut, "batch_tokens", "steps", options=options).warnings
             if "extrapolation" in w]
    assert [w.split(" = ")[0] for w in found] == ["B* at N=1e+06", "B* at N=4e+06"]
    assert found[0].startswith("B* at N=1e+06 = 409.6 lies below the smallest batch measured "
                               "(1024 to 3.277e+04)")
