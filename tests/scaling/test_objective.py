"""scaling/: the shared pieces - Huber objective and gradients, multi-start L-BFGS, bootstrap,
input checks and the CSV table."""
import numpy as np
import pytest

from scaling import chinchilla, compute_law, loss_to_loss
from scaling.bootstrap import (
    Estimate,
    bootstrap,
    estimates,
    interval,
    predictive,
    resample_indices,
)
from scaling.inputs import bootstrap_settings, positive_arrays, require_distinct
from scaling.objective import (
    best_starts,
    fit_power_law,
    huber,
    huber_log_objective,
    log_sum_exp,
    minimize_multistart,
)
from scaling.table import Table, read_csv


def test_huber_is_quadratic_inside_and_linear_outside():
    r = np.array([-0.5, -1e-3, 0.0, 5e-4, 2.0])
    value, slope = huber(r, 1e-3)
    np.testing.assert_allclose(value, [1e-3 * (0.5 - 5e-4), 0.5e-6, 0, 0.5 * 25e-8,
                                       1e-3 * (2 - 5e-4)])
    np.testing.assert_allclose(slope, [-1e-3, -1e-3, 0, 5e-4, 1e-3])


def test_log_sum_exp_is_stable_and_its_weights_are_the_softmax():
    terms = np.array([[1000.0, -5.0], [1000.0, 0.0], [0.0, 2.0]])
    total, weights = log_sum_exp(terms)
    np.testing.assert_allclose(total, [1000 + np.log(2), np.log(np.exp(-5) + 1 + np.exp(2))])
    np.testing.assert_allclose(weights.sum(axis=0), 1)
    np.testing.assert_allclose(weights[:, 0], [0.5, 0.5, 0], atol=1e-300)


def _numeric_jacobian(predict_log, theta, h=1e-6):
    columns = []
    for i in range(len(theta)):
        step = np.zeros(len(theta))
        step[i] = h
        columns.append((predict_log(theta + step)[0] - predict_log(theta - step)[0]) / (2 * h))
    return np.array(columns)


@pytest.mark.parametrize("law, theta, n_inputs", [
    (lambda x: chinchilla._log_prediction(*x), [6.0, 7.5, 0.6, 0.34, 0.37], 2),
    (lambda x: loss_to_loss._log_prediction(*x), [17.0, 20.0, 0.6, 0.4, 0.45], 2),
    (lambda x: compute_law._log_prediction(x[0]), [0.5, 0.3, 0.15], 1),
])
def test_analytic_jacobians_match_finite_differences(law, theta, n_inputs):
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(16, 24, 30), rng.uniform(19, 26, 30)][:n_inputs]
    if n_inputs == 1:
        inputs = [rng.uniform(-3, 3, 30)]
    predict_log = law(inputs)
    theta = np.array(theta)
    np.testing.assert_allclose(predict_log(theta)[1], _numeric_jacobian(predict_log, theta),
                               rtol=1e-5, atol=1e-7)


def test_objective_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    log_n, log_d = rng.uniform(17, 23, 50), rng.uniform(20, 26, 50)
    theta = np.array([6.0, 7.5, 0.6, 0.34, 0.37])
    loss = np.exp(chinchilla._log_prediction(log_n, log_d)(theta)[0] + rng.normal(0, 0.01, 50))
    objective = huber_log_objective(chinchilla._log_prediction(log_n, log_d), loss)
    probe = theta + 0.01
    numeric = [(objective(probe + h)[0] - objective(probe - h)[0]) / 2e-7
               for h in np.eye(5) * 1e-7]
    np.testing.assert_allclose(objective(probe)[1], numeric, rtol=1e-4)


def test_objective_is_infinite_where_the_law_overflows():
    objective = huber_log_objective(lambda t: (np.full(3, t[0]), np.ones((1, 3))),
                                    np.ones(3))
    assert objective(np.array([np.inf]))[0] == np.inf


def test_multistart_keeps_the_lowest_optimum_and_screens_starts():
    def double_well(x):  # minima at -1 (value 0.5) and +1 (value 0)
        return (x[0]**2 - 1)**2 + 0.25 * (1 - x[0]), np.array([4 * x[0] * (x[0]**2 - 1) - 0.25])
    result = minimize_multistart(double_well, [[-1.2], [1.3]])
    assert result.x[0] == pytest.approx(1, abs=0.05) and result.n_starts == 2
    screened = best_starts(double_well, np.array([[-1.0], [1.0], [3.0]]), 1)
    np.testing.assert_array_equal(screened, [[1.0]])
    with pytest.raises(ValueError, match="no start converged"):
        minimize_multistart(lambda x: (np.inf, np.zeros(1)), [[0.0]])


def test_power_law_fit_is_exact_on_a_power_law():
    x = np.geomspace(1, 1e6, 7)
    assert fit_power_law(x, 3.0 * x**0.42) == pytest.approx((3.0, 0.42))


def test_stratified_resampling_keeps_each_stratum_and_its_size():
    strata = np.array([0, 0, 0, 1, 1, 2])
    idx = resample_indices(6, np.random.default_rng(0), strata)
    np.testing.assert_array_equal(np.bincount(strata[idx]), [3, 2, 1])


def test_percentile_interval_and_failed_resamples():
    samples = np.arange(1001, dtype=float)
    band = interval(500, samples, 0.9)
    assert (band.value, band.low, band.high, band.level) == pytest.approx((500, 50, 950, 0.9))
    calls = iter(range(100))

    def flaky(idx):
        if next(calls) % 2:
            raise ValueError("degenerate resample")
        return [idx.mean(), 1.0]
    with pytest.warns(UserWarning, match="50 of 100"):
        draws = bootstrap(flaky, 10, n_resamples=100, seed=0)
    assert draws.shape == (100, 2) and np.isnan(draws[1::2]).all()
    table = estimates(["m", "one"], np.array([4.5, 1.0]), draws, 0.95)
    assert table["one"] == Estimate(1.0, 1.0, 1.0, 0.95)
    assert 2 < table["m"].low < 4.5 < table["m"].high < 7
    with pytest.raises(ValueError, match="every bootstrap resample failed"):
        bootstrap(lambda idx: (_ for _ in ()).throw(ValueError("no")), 5, n_resamples=3,
                  seed=0)


def test_predictive_bands_follow_the_parameter_draws():
    draws = np.random.default_rng(0).normal(2.0, 0.1, (2000, 1))
    band = predictive(lambda t: t[0] * np.array([1.0, 10.0]), np.array([2.0]), draws, 0.95)
    assert band[1].value == 20 and band[1].low == pytest.approx(10 * band[0].low)
    assert band[0].low == pytest.approx(2 - 1.96 * 0.1, abs=0.02)


def test_input_checks_name_the_problem():
    with pytest.raises(ValueError, match="loss are non-finite or not positive"):
        positive_arrays("law", 1, n=[1, 2, 3], loss=[1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="3 points for 3 parameters"):
        positive_arrays("law", 3, n=[1, 2, 3])
    with pytest.raises(ValueError, match="differ in length"):
        positive_arrays("law", 1, n=[1, 2, 3], d=[1, 2])
    with pytest.raises(ValueError, match="1 distinct model size"):
        require_distinct("law", "model size", np.ones(5), 3)
    with pytest.raises(ValueError, match="level=95: the interval level must be in \\(0, 1\\)"):
        bootstrap_settings(100, 95)
    with pytest.raises(ValueError, match="n_bootstrap=0"):
        bootstrap_settings(0, 0.95)


def test_csv_table_types_columns_and_selects_rows(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("name,N,loss\na,1e6,3.5\nb,2e6,\nc,4e6,3.1\n")
    table = read_csv(str(path))
    assert table.names == ["name", "N", "loss"] and len(table) == 3
    assert table["name"].tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(np.isnan(table.numeric("loss")), [False, True, False])
    assert table.rows(table.numeric("N") > 1.5e6)["name"].tolist() == ["b", "c"]
    with pytest.raises(ValueError, match="no column 'tokens'.*name, N, loss"):
        table["tokens"]
    with pytest.raises(ValueError, match="not numeric"):
        table.numeric("name")
    with pytest.raises(ValueError, match="differ in length"):
        Table({"a": [1, 2], "b": [1]})
