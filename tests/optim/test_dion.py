"""optim.dion against the authors' PyTorch Dion (microsoft/dion, dion/dion_reference.py), replayed
from tests/fixtures/optimizers/dion.npz (written by make_dion.py there), plus the orientation
rule, stacked layers, the zero-gradient guard, the initial Q and argument checks.

The fixture's Dion runs its published defaults with qr_method "rcqr" (a randomized Cholesky QR
of the tall P = B Q, its sketch drawn from the optimizer's own RNG) and AdamW or Lion on the
rest; optim.dion uses a Householder QR. The two give the same orthonormal P up to the signs of
its columns, on which the update P Q^T and the feedback P R^T do not depend, so the trajectories
agree up to round-off; the initial Q, a torch.randn draw, is injected (`initial_q`). The
reference orthonormalises P and normalises R's columns in float32 whatever the parameters'
dtype (optim.dion does too), and passes lr, mu and weight decay as float32 scalars, so its
float64 run is float32-accurate in P and Q: the float64 tolerance is float32 round-off grown
over the steps, not float64's.

Measured max relative errors over the 12 steps (this machine): float64 "matrices" 3.4e-8,
"lion" 3.5e-8, "model" 9.0e-8; float32 "matrices" 2.2e-7, "lion" 3.7e-7, "model" 5.8e-7 (with a
float64 Householder QR instead of the reference's float32 one the float64 errors stay the same:
they are the reference's own float32 round-off in P, times the lr, over the steps). Tolerances:
float64 1e-6, float32 5e-6, ~10x above those; every algorithmic slip tried moves the parameters
by far more: the decay applied after the step instead of before 5e-5, the square matrix's Q on
the output side 5e-3, AdamW's class betas (0.9, 0.95) instead of train.py's 3e-3, no column
normalisation of R 2e-3, sqrt(in / out) instead of sqrt(out / in) 2e-2, mu for 1 - mu in the
feedback 2e-2.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim import dion as dion_module
from optim.dion import DionState, dion, q_axis, rank, scalar_optimizer, scale_by_dion
from optim.masks import matrices_and_rest
from tests.optim import reference

FIXTURE = reference.load("dion")
META = FIXTURE.meta
HYPER = META["hyperparameters"]
CASES = [(problem, dtype) for problem in ("matrices", "lion", "model")
         for dtype in ("float64", "float32")]
TOLERANCE = {"float64": 1e-6, "float32": 5e-6}
SCALAR_OPT = {"matrices": "adamw", "lion": "lion", "model": "adamw"}


def decayed(problem: str, name: str) -> bool:
    group = META["param_groups"][problem].get(name)
    return True if group is None else group[1]


def make_tx(problem: str, dtype: str):
    """The fixture's optimizer in optiscale's layout: Dion on the matrices, the reference's
    initial Q injected; AdamW or Lion (LM head at lr / sqrt(d_in)) on the rest."""
    q0 = reference.section(FIXTURE, problem, dtype, "q0")

    def make(schedule):
        mask = lambda params: {k: decayed(problem, k) for k in params}  # noqa: E731
        matrices = dion(schedule, mu=HYPER["mu"], rank_fraction=HYPER["rank_fraction"][problem],
                        rank_multiple_of=HYPER["rank_multiple_of"],
                        power_iters=HYPER["power_iters"], eps=HYPER["epsilon"],
                        weight_decay=HYPER["weight_decay"], mask=mask, initial_q=q0)
        rest = scalar_optimizer(SCALAR_OPT[problem], schedule, b1=HYPER["betas"][0],
                                b2=HYPER["betas"][1], eps=HYPER["epsilon"],
                                weight_decay=HYPER["weight_decay"], mask=mask)
        return matrices_and_rest(matrices, rest)
    return make


@pytest.mark.parametrize("problem, dtype", CASES)
def test_matches_the_reference_trajectory(problem, dtype):
    err = reference.max_relative_error(FIXTURE, problem, dtype, make_tx(problem, dtype),
                                       to_jax=reference.transpose_2d)
    assert err < TOLERANCE[dtype], f"{problem}/{dtype}: max relative error {err:.2e}"


def test_the_fixture_exercises_both_orientations_and_low_rank():
    """tall (12, 6) keeps the reference's orientation, wide (5, 10) is transposed; their Q
    lives on the short side of optiscale's (in, out) kernel either way."""
    q0 = reference.section(FIXTURE, "matrices", "float64", "q0")
    for name, (out, inp) in (("tall", (12, 6)), ("wide", (5, 10)), ("square", (8, 8))):
        kernel = (inp, out)
        r = rank(kernel, 0.5, 1)
        assert q0[name].shape == (kernel[q_axis(kernel)], r) == (min(out, inp), r)
    assert q_axis((6, 12)) == 0 and q_axis((10, 5)) == 1 and q_axis((8, 8)) == 0


def test_rank_rounds_as_the_reference():
    assert rank((768, 3072), 0.25, 1) == 192
    assert rank((10, 30), 0.1, 1) == 1
    assert rank((100, 300), 0.55, 1) == 56  # 0.55 * 100 = 55.00000000000001, rounded up
    assert rank((64, 64), 0.1, 8) == 8
    assert rank((6, 4), 1.0, 8) == 4


def direction_of(g, **kwargs):
    tx = scale_by_dion(**kwargs)
    state = tx.init({"w": jnp.zeros_like(g)})
    return tx.update({"w": g}, state)


def test_full_rank_first_step_is_the_scaled_orthonormal_factor():
    """rank 1.0, first step: M = G; with P = qr(G^T Q) (the reference's B = G^T for out >= in)
    and Q' = colnorm(G P), the direction is sqrt(out / in) (P Q'^T)^T; M keeps mu G."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=(6, 9))  # (in, out): out > in, B = G^T
    with jax.enable_x64(True):
        q0 = rng.normal(size=(6, 6))
        out, state = direction_of(jnp.asarray(g), initial_q={"w": q0}, mu=0.9)
        p = np.linalg.qr((g.T @ q0).astype(np.float32).astype(np.float64))[0]
        r = g @ p
        q = r / (np.linalg.norm(r, axis=0) + 1e-8)
        want = math.sqrt(9 / 6) * (p @ q.T).T
        np.testing.assert_allclose(out["w"], want, rtol=1e-5, atol=1e-6)
        # full rank: P P^T B = B, so the feedback leaves mu B
        np.testing.assert_allclose(state.momentum["w"], 0.9 * g, rtol=1e-5, atol=1e-6)
        assert state.q["w"][0].shape == (6, 6) and state.q["w"][1] is None


def test_zero_gradient_gives_no_update_and_keeps_q():
    g = jnp.zeros((4, 3))
    out, state = direction_of(g, initial_q={"w": 2 * jnp.ones((3, 3))})
    assert np.all(np.asarray(out["w"]) == 0) and np.all(np.isfinite(state.q["w"][1]))
    np.testing.assert_allclose(state.q["w"][1], np.full((3, 3), 1 / math.sqrt(3)), rtol=1e-6)


def test_stacked_layers_are_separate_matrices():
    """A stack of two (in, out) matrices updates as each alone (its own M and Q)."""
    rng = np.random.default_rng(1)
    grads = [jnp.asarray(rng.normal(size=(2, 5, 7)), jnp.float32) for _ in range(3)]
    q0 = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
    kwargs = dict(rank_fraction=0.5)
    stacked = scale_by_dion(stacked={"w": True}, initial_q={"w": q0}, **kwargs)
    state = stacked.init({"w": grads[0]})
    layers = [scale_by_dion(initial_q={"w": q0[i]}, **kwargs) for i in range(2)]
    layer_states = [tx.init({"w": grads[0][i]}) for i, tx in enumerate(layers)]
    for g in grads:
        out, state = jax.jit(stacked.update)({"w": g}, state)
        for i, tx in enumerate(layers):
            want, layer_states[i] = tx.update({"w": g[i]}, layer_states[i])
            np.testing.assert_allclose(out["w"][i], want["w"], rtol=1e-5, atol=1e-6)


def test_seeded_q_is_one_draw_per_shape_and_follows_the_seed():
    params = {"a": jnp.zeros((8, 16)), "b": jnp.zeros((8, 16)), "c": jnp.zeros((16, 8))}
    q = scale_by_dion().init(params).q
    np.testing.assert_array_equal(q["a"][0], q["b"][0])
    np.testing.assert_array_equal(q["a"][0], q["c"][1])  # both (8, 8)
    other = scale_by_dion(seed=1).init(params).q
    assert not np.allclose(q["a"][0], other["a"][0])


def test_state_declares_q_on_its_parameter_axis():
    assert DionState.factor_param_axis("q", (1,)) == 1
    assert DionState.factor_param_axis("momentum", ()) is None


def test_lion_lm_head_multiplier():
    tree = {"unembed": {"kernel": jnp.zeros((16, 100))}, "embedding": jnp.zeros((100, 16)),
            "b": jnp.zeros(16)}
    got = dion_module.lm_head_multipliers(tree)
    assert got == {"unembed": {"kernel": 0.25}, "embedding": 1.0, "b": 1.0}


@pytest.mark.parametrize("kwargs, match", [
    (dict(mu=1.0), "mu"), (dict(rank_fraction=0.0), "rank_fraction"),
    (dict(rank_fraction=1.5), "rank_fraction"), (dict(power_iters=0), "power_iters"),
    (dict(rank_multiple_of=0), "rank_multiple_of"), (dict(eps=0.0), "eps"),
    (dict(seed=-1), "seed"), (dict(precision="fast"), "precision")])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        scale_by_dion(**kwargs)


def test_non_matrices_and_bad_initial_q_are_refused():
    with pytest.raises(ValueError, match="matrices"):
        scale_by_dion().init({"b": jnp.zeros(3)})
    with pytest.raises(ValueError, match="shape"):
        scale_by_dion(initial_q={"w": jnp.zeros((3, 3))}).init({"w": jnp.zeros((4, 5))})
    with pytest.raises(ValueError, match="not parameters"):
        scale_by_dion(initial_q={"v": jnp.zeros((4, 4))}).init({"w": jnp.zeros((4, 5))})
    with pytest.raises(ValueError, match="learning_rate"):
        dion(-1.0)
    with pytest.raises(ValueError, match="scalar_opt"):
        scalar_optimizer("sgd", 1e-3, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.0)
    assert isinstance(dion(1e-2), optax.GradientTransformation)
