"""Cautious optimizers (optim/cautious.py) against the authors' PyTorch C-AdamW and C-Lion
(github.com/kyleliang919/C-Optim), step for step, plus the wrapper's own contract.

The fixtures (tests/fixtures/optimizers/cautious_adamw.npz and cautious_lion.npz, written by
make_cautious.py) hold the references' trajectories at optiscale's defaults (AdamW's b1 0.9,
b2 0.95, eps 1e-8; Lion's b1 0.9, b2 0.99; weight decay 0.1) over 12 steps of a warmup-then-
cosine lr, on "matrices" (fixed gradients; a matrix, a vector, a table: the mask is normalised
per tensor) and "model" (a tiny MLP). Measured max relative errors (jax 0.10.2, torch 2.14.1,
CPU):

                      float64    float32
    C-AdamW matrices  5.8e-16    2.5e-7
    C-AdamW model     6.2e-16    3.6e-7
    C-Lion  matrices  4.8e-16    3.0e-7
    C-Lion  model     8.3e-16    3.3e-7

float64 is round-off, so 1e-12. float32: a few ulps of each step and of the decay factor per
step, fed back through the MLP's gradients, over 12 steps; 2e-6 keeps ~5x headroom. The masks
are discrete: one entry flipped by round-off would cost ~lr / max|p| ~ 1e-3 (none flips here;
the masked entries' signs are far from zero). Without the caution the same optimizers are
1.5e-3 (Lion) to 3e-2 (AdamW) away, and with the other normalisation > 1e-4: the fixtures
tell each piece apart.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim.cautious import cautious, cautious_adamw, cautious_lion
from optim.hparams.cautious import CAUTIOUS_ADAMW, CAUTIOUS_LION
from optim.hparams.from_optax import ADAMW, LION
from optim.masks import matrices_and_rest, stacked_mask
from tests.optim import reference

TOLERANCE = {"float64": 1e-12, "float32": 2e-6}
CASES = [(name, problem, dtype) for name in ("cautious_adamw", "cautious_lion")
         for problem in ("matrices", "model") for dtype in TOLERANCE]


def make_tx(name, fixture, **overrides):
    h = fixture.meta["hyperparameters"]
    b1, b2 = h["betas"]
    if name == "cautious_adamw":
        kw = dict(b1=b1, b2=b2, eps=h["eps"], weight_decay=h["weight_decay"], **overrides)
        return lambda schedule: cautious_adamw(schedule, **kw)
    kw = dict(b1=b1, b2=b2, weight_decay=h["weight_decay"], **overrides)
    return lambda schedule: cautious_lion(schedule, **kw)


@pytest.fixture(scope="module")
def fixtures():
    return {name: reference.load(name) for name in ("cautious_adamw", "cautious_lion")}


def test_fixtures_are_the_published_settings(fixtures):
    adamw = fixtures["cautious_adamw"].meta
    assert adamw["class"] == "AdamW" and adamw["hyperparameters"]["foreach"]
    assert tuple(adamw["hyperparameters"]["betas"]) == (ADAMW["b1"].default, ADAMW["b2"].default)
    assert adamw["hyperparameters"]["eps"] == ADAMW["eps"].default
    lion = fixtures["cautious_lion"].meta
    assert lion["class"] == "Lion"
    assert tuple(lion["hyperparameters"]["betas"]) == (LION["b1"].default, LION["b2"].default)
    for meta in (adamw, lion):
        assert meta["hyperparameters"]["weight_decay"] > 0


@pytest.mark.parametrize("name, problem, dtype", CASES)
def test_matches_the_reference_trajectory(fixtures, name, problem, dtype):
    """At the section's default normalisation (C-AdamW: mean, C-Lion: count)."""
    fixture = fixtures[name]
    err = reference.max_relative_error(fixture, problem, dtype, make_tx(name, fixture))
    assert err < TOLERANCE[dtype], err


@pytest.mark.parametrize("name, other", [("cautious_adamw", "count"), ("cautious_lion", "mean")])
def test_the_references_normalise_differently(fixtures, name, other):
    """c_adamw.py divides by the kept fraction, c_lion.py multiplies by numel / (kept + 1):
    swapping them is visible in every problem."""
    for problem in ("matrices", "model"):
        err = reference.max_relative_error(fixtures[name], problem, "float64",
                                           make_tx(name, fixtures[name], normalization=other))
        assert err > 1e-4, (problem, err)


@pytest.mark.parametrize("name", ["cautious_adamw", "cautious_lion"])
def test_the_uncautious_optimizer_is_not_the_reference(fixtures, name):
    h = fixtures[name].meta["hyperparameters"]
    b1, b2 = h["betas"]
    plain = ((lambda s: optax.adamw(s, b1=b1, b2=b2, eps=h["eps"],
                                    weight_decay=h["weight_decay"]))
             if name == "cautious_adamw" else
             (lambda s: optax.lion(s, b1=b1, b2=b2, weight_decay=h["weight_decay"])))
    assert reference.max_relative_error(fixtures[name], "model", "float64", plain) > 1e-3


def test_defaults_are_the_sections():
    assert CAUTIOUS_ADAMW["normalization"].default == "mean"
    assert CAUTIOUS_LION["normalization"].default == "count"
    for section, base in ((CAUTIOUS_ADAMW, ADAMW), (CAUTIOUS_LION, LION)):
        for key, field in base.fields.items():
            assert section[key] == field, key
        assert section.search == base.search


# --------------------------------------------------------------- the wrapper


U = jnp.asarray([1.0, -1.0, 2.0, 0.0, -3.0, 0.5])
G = jnp.asarray([1.0, 1.0, 3.0, 1.0, -1.0, -2.0])  # agree: entries 0, 2, 4


def fixed(u):
    """A stateless transform returning `u` whatever the gradient."""
    return optax.GradientTransformation(lambda p: optax.EmptyState(),
                                        lambda g, s, p=None: (jax.tree.map(lambda _: u, g), s))


@pytest.mark.parametrize("normalization, scale", [("mean", 6 / 3), ("count", 6 / (3 + 1))])
def test_mask_and_normalisation_by_hand(normalization, scale):
    out, _ = cautious(fixed(U), normalization=normalization).update(G, optax.EmptyState())
    np.testing.assert_allclose(out, scale * np.asarray([1.0, 0, 2.0, 0, -3.0, 0]), rtol=1e-6)


def test_steps_flip_the_comparison():
    """Around a complete optimizer (updates = -lr x direction) `steps=True` keeps the same
    entries as the direction's cautious version followed by the lr."""
    params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(4, 5)), jnp.float32)}
    grads = [jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1)), params) for i in range(3)]
    a = optax.chain(cautious(optax.scale_by_adam()), optax.scale(-0.1))
    b = cautious(optax.chain(optax.scale_by_adam(), optax.scale(-0.1)), steps=True)
    sa, sb = a.init(params), b.init(params)
    for g in grads:
        ua, sa = a.update(g, sa, params)
        ub, sb = b.update(g, sb, params)
        np.testing.assert_allclose(ua["w"], ub["w"], rtol=1e-6)
    assert 0 < np.mean(np.asarray(ua["w"]) != 0) < 1  # some entries masked, some kept


def test_no_agreeing_entry_gives_a_zero_step():
    out, _ = cautious(fixed(-G)).update(G, optax.EmptyState())
    np.testing.assert_array_equal(out, np.zeros(G.shape))
    out, _ = cautious(fixed(-G), normalization="count").update(G, optax.EmptyState())
    np.testing.assert_array_equal(out, np.zeros(G.shape))


def test_bfloat16_counts_in_float32():
    """1000 entries of which 600 agree: the kept entries scale by 1000 / 600 exactly as far as
    bfloat16 can say (a bfloat16 sum of ones would stop at 256)."""
    u = jnp.ones(1000, jnp.bfloat16)
    g = jnp.where(jnp.arange(1000) < 600, 1.0, -1.0).astype(jnp.bfloat16)
    out, _ = cautious(fixed(u)).update(g, optax.EmptyState())
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out[:600], np.float32), 1000 / 600, rtol=4e-3)
    np.testing.assert_array_equal(np.asarray(out[600:], np.float32), 0.0)


@pytest.mark.parametrize("normalization", ["mean", "count"])
def test_stacked_layers_are_normalised_one_by_one(normalization):
    """A (layers, n, m) stack marked `stacked` gives each layer's own cautious steps (over
    three steps, so that Adam's direction disagrees with the gradient somewhere; layer 1's
    gradients are shifted so the layers keep different fractions)."""
    rng = np.random.default_rng(1)
    grads = [[jnp.asarray(rng.normal(size=(3, 4)) + i, jnp.float32) for i in range(2)]
             for _ in range(3)]
    tx = cautious(optax.scale_by_adam(), normalization=normalization,
                  stacked={"layers": {"k": True}})
    one = cautious(optax.scale_by_adam(), normalization=normalization)
    state = tx.init({"layers": {"k": jnp.zeros((2, 3, 4))}})
    states = [one.init({"k": jnp.zeros((3, 4))}) for _ in range(2)]
    kept = []
    for g in grads:
        out, state = jax.jit(tx.update)({"layers": {"k": jnp.stack(g)}}, state)
        for i in range(2):
            want, states[i] = jax.jit(one.update)({"k": g[i]}, states[i])
            np.testing.assert_allclose(out["layers"]["k"][i], want["k"], rtol=1e-6)
            kept.append(float(np.mean(np.asarray(want["k"]) != 0)))
    assert min(kept) < 1 and len(set(kept)) > 2, kept


def test_inside_a_multi_transform_with_stacked_paths():
    """Under matrices_and_rest the wrapper sees masked trees (optax's MaskedNode) and still
    finds the stacked leaves by their paths: each layer is its own tensor."""
    rng = np.random.default_rng(2)
    params = {"embedding": jnp.ones((6, 4)),
              "layers": {"mlp": {"up": {"kernel": jnp.ones((2, 4, 4))}}}}
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32),
                          params) for _ in range(3)]
    tx = matrices_and_rest(cautious(optax.scale_by_adam(), stacked=stacked_mask),
                           optax.scale_by_adam())
    update, state = jax.jit(tx.update), tx.init(params)
    one = cautious(optax.scale_by_adam())
    layer_states = [one.init({"k": jnp.ones((4, 4))}) for _ in range(2)]
    for g in grads:
        out, state = update(g, state, params)
        for i in range(2):
            want, layer_states[i] = one.update(
                {"k": g["layers"]["mlp"]["up"]["kernel"][i]}, layer_states[i])
            np.testing.assert_allclose(out["layers"]["mlp"]["up"]["kernel"][i], want["k"],
                                       rtol=1e-5, atol=1e-7)  # jit vs eager
    assert np.any(np.asarray(out["layers"]["mlp"]["up"]["kernel"]) == 0)
    assert np.all(np.asarray(out["embedding"]) != 0)  # the rest is plain Adam


def test_extra_arguments_reach_the_inner_transform():
    seen = {}

    def update(g, s, p=None, **extra):
        seen.update(extra)
        return g, s

    inner = optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)
    tx = optax.chain(cautious(inner), optax.scale(-1.0))
    tx.update({"w": G}, tx.init({"w": G}), None, loss=3.0)
    assert seen == {"loss": 3.0}


def test_state_is_the_inner_optimizers():
    params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros((4,))}
    n = 16
    adam_state = cautious_adamw(1e-3).init(params)
    lion_state = cautious_lion(1e-3).init(params)
    floats = lambda s: sum(x.size for x in jax.tree.leaves(s) if x.ndim > 0)  # noqa: E731
    assert floats(adam_state) == 2 * n and floats(lion_state) == n
    assert isinstance(adam_state[0], optax.ScaleByAdamState)


@pytest.mark.parametrize("make, kwargs, name", [
    (cautious_adamw, dict(learning_rate=-1.0), "learning_rate"),
    (cautious_adamw, dict(b1=1.0), "b1"),
    (cautious_adamw, dict(eps=-1.0), "eps"),
    (cautious_adamw, dict(weight_decay=-0.1), "weight_decay"),
    (cautious_adamw, dict(normalization="median"), "normalization"),
    (cautious_lion, dict(b2=1.5), "b2"),
    (cautious_lion, dict(normalization="sum"), "normalization"),
])
def test_bad_hyperparameters(make, kwargs, name):
    with pytest.raises(ValueError, match=name):
        make(**{"learning_rate": 1e-3, **kwargs})
