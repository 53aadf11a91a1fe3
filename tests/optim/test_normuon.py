"""optim.normuon against the authors' reference (zichongli5/NorMuon, normuon.py,
SingleDeviceNorMuonWithAuxAdam; trajectories in tests/fixtures/optimizers/normuon.npz, written by
make_normuon.py with the reference's bfloat16 Newton-Schulz cast removed), plus the layout
rules, stacked layers and argument checks.

Tolerances. The max relative error (tests/optim/reference.py) over the 12 steps of each
(problem, dtype) measured 6.0e-16 / 7.7e-16 ("matrices" / "model") in float64 and 3.1e-7 /
4.9e-7 in float32: round-off of the matmuls and reductions (PyTorch's and XLA's orders differ,
and a square matrix is iterated as G there and G^T here, equal in exact arithmetic since
NS(X^T) = NS(X)^T), growing about linearly over the steps (1e-7 after one float32 step, 3e-7
to 5e-7 after 12: the parameters' accumulated rounding; the normalisations keep the update's
own error from compounding). Bounds: 1e-12 in float64, 3e-6 in float32 (6-10x the measured
errors), far below any change of the method: feeding the (out, in) weights untransposed (the
per-neuron moment over the wrong side, the sqrt(out / in) scale inverted) misses by 2e-2
(test_a_wrong_layout_is_caught).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim
from configs import base
from optim.hparams.normuon import NORMUON
from optim.normuon import ScaleByNormuonState, normuon, normuon_and_adamw, scale_by_normuon
from tests.optim import reference

FIXTURE = reference.load("normuon")
TOLERANCE = {"float64": 1e-12, "float32": 3e-6}
CASES = [(problem, dtype) for problem in ("matrices", "model")
         for dtype in ("float64", "float32")]


def to_optiscale(tree):
    """PyTorch's (..., out, in) weights <-> optiscale's (..., in, out) kernels (its own inverse;
    the stacked "layers" transpose per layer); embedding tables are (vocab, d) in both."""
    return {k: v if k == "embedding" or np.ndim(v) < 2 else jnp.swapaxes(v, -1, -2)
            for k, v in tree.items()}


def fixture_tx(schedule):
    """What the fixture ran: the reference's defaults, weight decay 0.1 in both parts, the
    Adam part at 0.25x the lr, every parameter decayed (no mask)."""
    h = FIXTURE.meta["hyperparameters"]
    return normuon_and_adamw(
        schedule, beta=h["momentum"], beta2=h["beta2"], weight_decay=h["weight_decay"],
        adam_b1=h["adam_betas"][0], adam_b2=h["adam_betas"][1], adam_eps=h["adam_eps"],
        adam_weight_decay=h["adam_weight_decay"], adam_lr_multiplier=h["adam_lr_multiplier"])


@pytest.mark.parametrize("problem, dtype", CASES)
def test_matches_the_reference(problem, dtype):
    err = reference.max_relative_error(FIXTURE, problem, dtype, fixture_tx, to_optiscale)
    assert err < TOLERANCE[dtype], err


def test_fixture_says_what_it_ran():
    meta = FIXTURE.meta
    assert meta["class"] == "SingleDeviceNorMuonWithAuxAdam"
    assert meta["commit"] == "d45c9a4280d758e2cf0b2b8333765d040e953937"
    assert "bfloat16" in meta["patch"]
    h = meta["hyperparameters"]
    assert (h["momentum"], h["beta2"]) == (NORMUON["beta"].default, NORMUON["beta2"].default)
    assert tuple(h["adam_betas"]) == (NORMUON["adam_b1"].default, NORMUON["adam_b2"].default)
    assert h["adam_eps"] == NORMUON["adam_eps"].default


def test_a_wrong_layout_is_caught():
    """Feeding the reference's (out, in) weights untransposed (the per-neuron moment over the
    wrong side, the sqrt(out / in) scale inverted) misses the fixture by far more than the
    tolerance: the comparison sees the layout."""
    err = reference.max_relative_error(FIXTURE, "matrices", "float64", fixture_tx)
    assert err > 1e-4, err


def test_second_moment_is_per_output_neuron():
    """v has one entry per column of an (in, out) kernel (per output neuron), per layer of a
    stack; a tall (in > out) and a wide kernel have Muon's scale sqrt(max(1, out / in))."""
    params = {"wide": jnp.ones((8, 4)), "tall": jnp.ones((4, 8)), "stack": jnp.ones((3, 5, 6))}
    tx = scale_by_normuon()
    state = tx.init(params)
    assert isinstance(state, ScaleByNormuonState)
    assert {k: v.shape for k, v in state.second_moment.items()} == {
        "wide": (4,), "tall": (8,), "stack": (3, 6)}
    assert jax.tree.map(jnp.shape, state.momentum) == jax.tree.map(jnp.shape, params)
    rng = np.random.default_rng(0)
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    updates, state = tx.update(grads, state)
    # One step from v = 0: every neuron's row of O' has RMS 1 / sqrt(1 - b2), then the update
    # is rescaled to ||O||_F: a column-wise constant RMS, times the shape's scale.
    for k, u in updates.items():
        columns = np.sqrt(np.mean(np.square(np.asarray(u)), axis=-2))
        np.testing.assert_allclose(columns, columns[..., :1] * np.ones_like(columns),
                                   rtol=1e-5, err_msg=k)
    rms = {k: float(np.sqrt(np.mean(np.square(np.asarray(u))))) for k, u in updates.items()}
    o_wide = optax.contrib._muon.orthogonalize_via_newton_schulz(
        grads["wide"], jnp.asarray((3.4445, -4.7750, 2.0315)), 5, eps=1e-7)
    o_tall = optax.contrib._muon.orthogonalize_via_newton_schulz(
        grads["tall"], jnp.asarray((3.4445, -4.7750, 2.0315)), 5, eps=1e-7)
    np.testing.assert_allclose(rms["wide"], np.sqrt(np.mean(np.square(o_wide))), rtol=1e-5)
    np.testing.assert_allclose(rms["tall"], np.sqrt(2) * np.sqrt(np.mean(np.square(o_tall))),
                               rtol=1e-5)


def test_stacked_layers_are_separate_matrices():
    """A (L, in, out) stack updates as its L matrices one by one, v and all."""
    rng = np.random.default_rng(1)
    stack = jnp.asarray(rng.normal(size=(3, 6, 4)))
    grads = [jnp.asarray(rng.normal(size=(3, 6, 4)) * (1 + t)) for t in range(4)]
    tx = normuon(0.02, weight_decay=0.1)

    def run(p, gs):
        state = tx.init(p)
        for g in gs:
            u, state = tx.update(g, state, p)
            p = optax.apply_updates(p, u)
        return p, state

    with jax.enable_x64(True):
        stacked, state = run({"w": stack}, [{"w": g} for g in grads])
        for i in range(3):
            alone, alone_state = run({"w": stack[i]}, [{"w": g[i]} for g in grads])
            np.testing.assert_allclose(stacked["w"][i], alone["w"], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(state[0].second_moment["w"][i],
                                       alone_state[0].second_moment["w"], rtol=1e-12)


def test_registered_builder_splits_matrices_from_the_rest():
    """optim.build("normuon"): NorMuon's state on the hidden matrices only, AdamW's on the
    embedding and norm scales; a jitted step runs and moves a matrix."""
    params = {"embedding": jnp.ones((16, 8)), "final_norm": {"scale": jnp.ones((8,))},
              "block_0": {"mlp": {"up": {"kernel": jnp.eye(8, 12)}}}}
    config = base.get_config()
    config.optimizer.name = "normuon"
    config.schedule.update(dict(name="constant", warmup_steps=0))
    opt = optim.build_from_config(config, params)
    state = opt.tx.init(params)
    normuon_states = [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(
        x, ScaleByNormuonState)) if isinstance(s, ScaleByNormuonState)]
    assert len(normuon_states) == 1
    moments = jax.tree_util.tree_leaves_with_path(normuon_states[0].second_moment)
    assert [(optim.masks.path_name(p), x.shape) for p, x in moments] == [
        ("block_0/mlp/up/kernel", (12,))]
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.1) + jnp.arange(p.size).reshape(
        p.shape) * 1e-3, params)
    updates, _ = jax.jit(opt.tx.update)(grads, state, params)
    assert np.all(np.isfinite(jax.tree.leaves(updates)[0]))
    assert np.any(np.asarray(updates["block_0"]["mlp"]["up"]["kernel"]) != 0)


def test_defaults_are_the_references():
    assert (NORMUON["beta"].default, NORMUON["beta2"].default, NORMUON["ns_steps"].default,
            NORMUON["nesterov"].default, NORMUON["weight_decay"].default) == (
        0.95, 0.95, 5, True, 0.0)
    assert NORMUON["adam_lr_multiplier"].default == pytest.approx(3e-4 / 0.02)
    space = NORMUON.search_space()
    assert space["start"]["lr"] == 0.02 and 0.02 in space["grids"]["lr"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(beta=1.0), "beta"), (dict(beta2=-0.1), "beta2"), (dict(ns_steps=0), "ns_steps"),
    (dict(ns_steps=2.5), "ns_steps")])
def test_direction_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        scale_by_normuon(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(weight_decay=-1.0), "weight_decay"), (dict(adam_b2=1.0), "adam_b2"),
    (dict(adam_eps=0.0), "adam_eps"), (dict(adam_lr_multiplier=-1.0), "adam_lr_multiplier")])
def test_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        normuon_and_adamw(0.02, **kwargs)
    with pytest.raises(ValueError, match="learning_rate"):
        normuon(-0.02)


def test_vectors_are_refused():
    with pytest.raises(ValueError, match="matrices"):
        scale_by_normuon().init({"b": jnp.ones((4,))})
