"""optim.mars against the authors' MARS (github.com/AGI-Arena/MARS, MARS/optimizers/mars.py, class
MARS, mars-adamw, is_approx) step for step: tests/fixtures/optimizers/mars.npz, written by
make_mars.py there (the constructor at the GPT-2 small defaults, two param groups, 12 steps of a
warmup-then-cosine lr). Plus what the fixture does not show: scanned layers, the state, the
argument checks.

Tolerances (max over steps and tensors of |ours - reference| / max|reference|, reference.py):
- float64, 1e-12: measured 1.0e-16 ("matrices") and 1.6e-15 ("model"): round-off, the same
  operations in the same order (the denominator's bias corrections come from expm1 here, from
  Python's float power there, and the AdamW part is optax's m_hat / (sqrt(v_hat) + eps)).
- float32, 1e-5: measured 1.0e-7 ("matrices", gradients fixed: no feedback) and 1.5e-6
  ("model": the parameters' round-off feeds into the next gradients, and the 1-D bias's Adam
  step m_hat / sqrt(v_hat) amplifies relative errors of its small entries over 12 steps, ~25
  ulps); 1e-5 leaves 7x headroom and is still 100x below the smallest change a wrong variant
  makes (test_the_fixture_tells_the_variants_apart).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim.hparams.mars import MARS
from optim.mars import ScaleByMarsState, mars, scale_by_mars
from tests.optim import reference

TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
CASES = [(problem, dtype) for problem in ("matrices", "model") for dtype in TOLERANCE]
# The reference's decayed tensors: its 2-D branch follows the param group (the table
# "embedding" sits in the weight_decay=0 group), its 1-D branch decays every non-2-D tensor at
# weight_decay_1d whatever the group says ("b" and "b1" sit in the weight_decay=0 group too).
MASKS = {"matrices": {"w": True, "w_small": True, "embedding": False, "b": True, "t3": True},
         "model": {"w1": True, "b1": True, "w2": True}}


@pytest.fixture(scope="module")
def fixture():
    return reference.load("mars")


def error(fixture, problem, dtype, **kwargs):
    kwargs = {"mask": MASKS[problem], **kwargs}
    return reference.max_relative_error(fixture, problem, dtype,
                                        lambda schedule: mars(schedule, **kwargs),
                                        to_jax=reference.transpose_2d)


@pytest.mark.parametrize("problem, dtype", CASES, ids=[f"{p}-{d}" for p, d in CASES])
def test_matches_the_reference(fixture, problem, dtype):
    assert error(fixture, problem, dtype) < TOLERANCE[dtype]


def test_the_fixture_holds_the_published_defaults(fixture):
    """The reference ran with the hparams Section's defaults (lr_1d / lr its lr_1d_factor)."""
    h = fixture.meta["hyperparameters"]
    assert fixture.meta["commit"] == "4831e28eba863a4e69d7e9474ff8e73bc1b410fe"
    assert (h["mars_type"], h["is_approx"], h["amsgrad"]) == ("mars-adamw", True, False)
    want = dict(b1=h["betas"][0], b2=h["betas"][1], gamma=h["gamma"], eps=h["eps"],
                weight_decay=h["weight_decay"], optimize_1d=h["optimize_1d"],
                lr_1d_factor=h["lr_1d"] / h["constructor_lr"], b1_1d=h["betas_1d"][0],
                b2_1d=h["betas_1d"][1], weight_decay_1d=h["weight_decay_1d"])
    assert want == {k: MARS[k].default for k in want}


VARIANTS = {
    "no correction (gamma 0)": ("matrices", dict(gamma=0.0)),
    "embedding decayed (its group says no)": ("matrices", dict(mask=None)),
    "vector undecayed (as its group says)": (
        "matrices", dict(mask={**MASKS["matrices"], "b": False})),
    "3-D tensor by MARS": ("matrices", dict(optimize_1d=True)),
    "1-D lr = lr": ("model", dict(lr_1d_factor=1.0)),
    "1-D betas = betas": ("model", dict(b1_1d=0.95, b2_1d=0.99)),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_fixture_tells_the_variants_apart(fixture, variant):
    """What an implementer could get wrong moves the float64 trajectory by far more than the
    float32 tolerance, so the fixture pins each choice down."""
    problem, kwargs = VARIANTS[variant]
    assert error(fixture, problem, "float64", **kwargs) > 1e-3


def test_the_clip_acts_on_some_steps_and_not_on_others(fixture):
    """"w_small"'s corrected gradient crosses norm 1 (both branches of the clip are replayed);
    the first step's correction uses a zero previous gradient, as the reference's state."""
    grads = reference.section(fixture, "matrices", "float64", "grads")["w_small"]
    scale = 0.025 * 0.95 / 0.05
    previous = np.concatenate([np.zeros_like(grads[:1]), grads[:-1]])
    norms = np.linalg.norm((grads + scale * (grads - previous)).reshape(len(grads), -1), axis=1)
    assert np.any(norms > 1) and np.any(norms < 1)


def test_first_step_state():
    """After one step: last_grad is the gradient, mu = (1 - b1) clip(c_1) with c_1 =
    (1 + gamma b1 / (1 - b1)) g (the previous gradient is zero), nu likewise squared."""
    g = {"w": jnp.full((2, 3), 0.1), "big": jnp.ones((3, 2))}
    tx = scale_by_mars(b1=0.9, b2=0.99, gamma=0.1, eps=1e-8)
    _, state = tx.update(g, tx.init(g))
    c = (1 + 0.1 * 0.9 / 0.1) * 0.1  # 0.19: ||c|| = 0.19 sqrt(6) < 1, unclipped
    np.testing.assert_allclose(state.mu["w"], 0.1 * c, rtol=1e-6)
    np.testing.assert_allclose(state.nu["w"], 0.01 * c * c, rtol=1e-6)
    np.testing.assert_allclose(state.mu["big"], 0.1 / math.sqrt(6), rtol=1e-6)  # clipped
    np.testing.assert_array_equal(state.last_grad["big"], g["big"])


def test_stacked_layers_are_their_own_tensors():
    """A stack of matrices is clipped layer by layer; a stack of vectors goes to AdamW: the
    stacked tree's trajectory is the unrolled one's."""
    rng = np.random.default_rng(0)
    layers = 3
    normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    params = {"w": normal(layers, 4, 5), "s": normal(layers, 5)}
    grads = [{k: normal(*v.shape) * (0.05 if t % 2 else 1.0) for k, v in params.items()}
             for t in range(6)]
    unstack = lambda tree: {f"{k}{i}": v[i] for k, v in tree.items() for i in range(layers)}  # noqa

    def run(tx, params, grads):
        state = tx.init(params)
        for g in grads:
            u, state = tx.update(g, state, params)
            params = optax.apply_updates(params, u)
        return params

    stacked = run(mars(1e-2, stacked={"w": True, "s": True}), params, grads)
    unrolled = run(mars(1e-2), unstack(params), [unstack(g) for g in grads])
    for k, v in unstack(stacked).items():
        np.testing.assert_allclose(v, unrolled[k], rtol=1e-5, atol=1e-7, err_msg=k)


def state_floats(params, **kwargs) -> int:
    state = jax.eval_shape(mars(1e-3, **kwargs).init, params)
    return sum(x.size for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating))


def test_state_is_three_tensors_per_2d_parameter_and_two_per_other():
    """mu, nu, last_grad per 2-D tensor (per layer; embedding tables included), AdamW's mu,
    nu per other tensor; optimize_1d: three for every tensor."""
    params = {"embedding": jnp.zeros((16, 8)), "w": jnp.zeros((8, 4)), "b": jnp.zeros(4),
              "t3": jnp.zeros((2, 3, 4)), "stack": jnp.zeros((2, 8, 8))}
    assert state_floats(params) == 3 * (128 + 32) + 2 * (4 + 24 + 128)
    assert state_floats(params, stacked={**{k: False for k in params}, "stack": True}) == (
        3 * (128 + 32 + 128) + 2 * (4 + 24))
    assert state_floats(params, optimize_1d=True) == 3 * (128 + 32 + 4 + 24 + 128)
    state = jax.eval_shape(scale_by_mars().init, params)
    assert isinstance(state, ScaleByMarsState)


@pytest.mark.parametrize("kwargs, name", [
    (dict(b1=1.0), "b1"), (dict(b2=-0.1), "b2"), (dict(gamma=-1.0), "gamma"),
    (dict(eps=0.0), "eps"), (dict(weight_decay=-0.1), "weight_decay"),
    (dict(lr_1d_factor=-1.0), "lr_1d_factor"), (dict(b1_1d=1.0), "b1_1d"),
    (dict(b2_1d=1.5), "b2_1d"), (dict(weight_decay_1d=-1.0), "weight_decay_1d")])
def test_bad_hyperparameters_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=name):
        mars(1e-3, **kwargs)
    with pytest.raises(ValueError, match="learning_rate"):
        mars(-1.0)


def test_a_float_learning_rate_is_its_constant_schedule():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(4, 3))), "b": jnp.asarray(rng.normal(size=3))}
    g = jax.tree.map(lambda x: x * 0.5 + 1.0, params)
    outs = [mars(lr).update(g, mars(lr).init(params), params)[0] for lr in (3e-3, lambda c: 3e-3)]
    for k in params:
        np.testing.assert_allclose(outs[0][k], outs[1][k], rtol=1e-7)


def test_search_space_starts_at_the_published_defaults():
    space = MARS.search_space()
    for key, grid in space["grids"].items():
        assert list(grid) == sorted(grid) and space["start"][key] in grid, key
    for key in ("b1", "b2", "gamma", "weight_decay", "lr_1d_factor"):
        assert space["start"][key] == MARS[key].default, key
    assert space["start"]["lr"] == 3e-2
