"""NAdamW (optim/from_optax.py) against AlgoPerf's PyTorch NAdamW, step for step.

The fixture (tests/fixtures/optimizers/nadamw.npz, written by make_nadamw.py) holds the
reference's trajectories at optiscale's defaults (b1 0.95, b2 0.98, eps 1e-8) with weight
decay 0.1 over 12 steps of a warmup-then-cosine lr, on "matrices" (fixed gradients) and "model"
(a tiny MLP, the gradients from the parameters). Measured max relative errors (jax 0.10.2,
torch 2.14.1, CPU):

    matrices  float64 4.6e-16   float32 3.1e-7
    model     float64 1.3e-15   float32 3.6e-7

float64 is round-off (the two compute v / (1 - b2^t) and the decay in a different order), so
1e-12. float32: each step adds O(1e-7) relative (a few ulps of the step, ~lr of the
parameter, and of the decay factor) and the MLP feeds an error back through the gradients;
over 12 steps 2e-6 leaves ~6x headroom and still fails any change of the algorithm (optax's
nadamw, with another bias correction, is 8e-3 and 2.3e-2 away).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim.from_optax import nadamw, scale_by_nadamw
from optim.hparams.from_optax import NADAMW
from tests.optim import reference

TOLERANCE = {"float64": 1e-12, "float32": 2e-6}
CASES = [(problem, dtype) for problem in ("matrices", "model") for dtype in TOLERANCE]


@pytest.fixture(scope="module")
def fixture():
    return reference.load("nadamw")


def fixture_tx(fixture):
    h = fixture.meta["hyperparameters"]
    b1, b2 = h["betas"]
    return lambda schedule: nadamw(schedule, b1=b1, b2=b2, eps=h["eps"],
                                   weight_decay=h["weight_decay"])


def test_fixture_is_the_published_setting(fixture):
    """The reference ran at the defaults optiscale publishes, with weight decay on."""
    h = fixture.meta["hyperparameters"]
    assert tuple(h["betas"]) == (NADAMW["b1"].default, NADAMW["b2"].default)
    assert h["eps"] == NADAMW["eps"].default and h["weight_decay"] > 0
    assert fixture.meta["class"] == "NAdamW" and len(h["lrs"]) == 12


@pytest.mark.parametrize("problem, dtype", CASES)
def test_matches_the_reference_trajectory(fixture, problem, dtype):
    err = reference.max_relative_error(fixture, problem, dtype, fixture_tx(fixture))
    assert err < TOLERANCE[dtype], err


@pytest.mark.parametrize("problem", ["matrices", "model"])
def test_optax_nadamw_is_not_the_reference(fixture, problem):
    """Why nadamw is not optax.nadamw: optax bias-corrects the momentum term by 1 - b1^(t+1)
    (Dozat's Algorithm 2), the reference both terms by 1 - b1^t; over the fixture's 12 steps
    that is ~1e-2 relative, far outside the tolerance."""
    h = fixture.meta["hyperparameters"]
    b1, b2 = h["betas"]
    err = reference.max_relative_error(
        fixture, problem, "float64",
        lambda s: optax.nadamw(s, b1=b1, b2=b2, eps=h["eps"], weight_decay=h["weight_decay"]))
    assert err > 1e-3, err


def test_first_step_is_the_look_ahead():
    """Step 1: m = (1 - b1) g and v_hat = g^2, so u = (b1 m + (1 - b1) g) / (1 - b1) / |g|
    = (1 + b1) sign(g) (with eps 0); optax's Nesterov Adam gives (1 + 2 b1) / (1 + b1)."""
    g = {"w": jnp.asarray([[0.3, -2.0], [5.0, -1e-3]])}
    tx = scale_by_nadamw(b1=0.9, b2=0.99, eps=0.0)
    u, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u["w"], 1.9 * np.sign(g["w"]), rtol=1e-6)
    assert int(state.count) == 1
    np.testing.assert_allclose(state.mu["w"], 0.1 * g["w"], rtol=1e-6)  # m_t, not the look-ahead


def test_weight_decay_and_lr_as_the_reference_orders_them():
    """p <- p (1 - lr wd) - lr u with the mask: a masked-out leaf is not decayed."""
    params = {"w": jnp.full((2, 2), 2.0), "b": jnp.full((2,), 2.0)}
    grads = jax.tree.map(jnp.ones_like, params)
    tx = nadamw(0.1, b1=0.9, b2=0.99, eps=0.0, weight_decay=0.5, mask={"w": True, "b": False})
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u["w"], 2.0 * (1 - 0.1 * 0.5) - 0.1 * 1.9 - 2.0, rtol=1e-6)
    np.testing.assert_allclose(u["b"], -0.1 * 1.9, rtol=1e-6)


def test_state_is_two_parameter_shaped_moments():
    params = {"w": jnp.zeros((3, 4), jnp.bfloat16), "b": jnp.zeros((4,))}
    state = nadamw(1e-3).init(params)[0]
    assert isinstance(state, optax.ScaleByAdamState)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), state.mu) == jax.tree.map(
        lambda x: (x.shape, x.dtype), params)
    floats = sum(x.size for x in jax.tree.leaves((state.mu, state.nu)))
    assert floats == 2 * sum(x.size for x in jax.tree.leaves(params))


def test_defaults_are_the_sections():
    params = {"w": jnp.asarray([[1.0, -2.0]])}
    default, _ = nadamw(1e-2).update(params, nadamw(1e-2).init(params), params)
    explicit = nadamw(1e-2, b1=0.95, b2=0.98, eps=1e-8, weight_decay=0.1)
    want, _ = explicit.update(params, explicit.init(params), params)
    np.testing.assert_array_equal(default["w"], want["w"])


@pytest.mark.parametrize("kwargs, name", [
    (dict(learning_rate=-1e-3), "learning_rate"),
    (dict(b1=1.0), "b1"),
    (dict(b1=-0.1), "b1"),
    (dict(b2=1.0), "b2"),
    (dict(eps=-1e-8), "eps"),
    (dict(weight_decay=-0.1), "weight_decay"),
])
def test_bad_hyperparameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        nadamw(**{"learning_rate": 1e-3, **kwargs})
