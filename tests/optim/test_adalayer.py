"""Adalayer: a trajectory against a float64 NumPy reference with and without per-coordinate
params, AdamW when every param is per-coordinate, state sizes, the Adalayer* mask, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim.adalayer import adalayer, adalayer_star_mask

SHAPES = {"embedding": (7, 4), "unembed": (4, 7),
          "block_0": {"attn": {"query": (4, 2, 3)}, "mlp_norm": {"scale": (4,)},
                      "mlp": {"up": (4, 8), "bias": (8,)}}}


def random_tree(rng):
    return jax.tree.map(lambda shape: rng.normal(size=shape).astype(np.float32), SHAPES,
                        is_leaf=lambda x: isinstance(x, tuple))


def np_adalayer(params, grads_per_step, lr, b1, b2, eps, wd, per_coordinate):
    """Float64 reference on flat lists of leaves."""
    p = [np.array(x, np.float64) for x in params]
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) if c else 0.0 for x, c in zip(p, per_coordinate)]
    trajectory = []
    for t, grads in enumerate(grads_per_step, start=1):
        for i, g in enumerate(grads):
            g = np.array(g, np.float64)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * (g ** 2 if per_coordinate[i] else np.mean(g ** 2))
            update = m[i] / (1 - b1 ** t) / (np.sqrt(v[i] / (1 - b2 ** t)) + eps)
            p[i] = p[i] - lr(t - 1) * (update + wd * p[i])
        trajectory.append(list(p))
    return trajectory


@pytest.mark.parametrize("per_coordinate", [None, adalayer_star_mask])
def test_trajectory_matches_numpy_reference(per_coordinate):
    rng = np.random.default_rng(0)
    params = jax.tree.map(jnp.asarray, random_tree(rng))
    grads_per_step = [random_tree(rng) for _ in range(10)]
    lr = optax.cosine_decay_schedule(0.05, 10)
    tx = adalayer(lr, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1,
                  per_coordinate=per_coordinate)
    mask = jax.tree.leaves(per_coordinate(params) if per_coordinate else
                           jax.tree.map(lambda _: False, params))
    reference = np_adalayer(jax.tree.leaves(params), [jax.tree.leaves(g) for g in grads_per_step],
                            lr, 0.9, 0.95, 1e-8, 0.1, mask)
    state = tx.init(params)
    step = jax.jit(tx.update)
    p = params
    for grads, expected in zip(grads_per_step, reference):
        updates, state = step(grads, state, p)
        p = optax.apply_updates(p, updates)
        for actual, want in zip(jax.tree.leaves(p), expected):
            np.testing.assert_allclose(actual, want, rtol=1e-5, atol=1e-6)


def test_all_per_coordinate_is_adamw():
    rng = np.random.default_rng(1)
    params = jax.tree.map(jnp.asarray, random_tree(rng))
    hyper = dict(learning_rate=optax.linear_schedule(0.01, 0.001, 10), b1=0.8, b2=0.99,
                 eps=1e-6, weight_decay=0.05)
    decay = jax.tree.map(lambda x: x.ndim >= 2, params)
    ours = adalayer(per_coordinate=lambda ps: jax.tree.map(lambda _: True, ps), mask=decay,
                    **hyper)
    adamw = optax.adamw(mask=decay, **hyper)
    p, q = params, params
    s, r = ours.init(p), adamw.init(q)
    for _ in range(10):
        g = jax.tree.map(jnp.asarray, random_tree(rng))
        u, s = ours.update(g, s, p)
        w, r = adamw.update(g, r, q)
        p, q = optax.apply_updates(p, u), optax.apply_updates(q, w)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_state_is_one_scalar_per_block():
    params = jax.tree.map(jnp.asarray, random_tree(np.random.default_rng(2)))
    star = adalayer(0.1, per_coordinate=adalayer_star_mask).init(params)[0]
    plain = adalayer(0.1).init(params)[0]

    def shapes(tree):
        return jax.tree.map(jnp.shape, tree)

    assert shapes(plain.nu) == jax.tree.map(lambda _: (), SHAPES,
                                            is_leaf=lambda x: isinstance(x, tuple))
    assert shapes(star.nu) == {"embedding": (), "unembed": (4, 7), "block_0": {
        "attn": {"query": ()}, "mlp_norm": {"scale": (4,)}, "mlp": {"up": (), "bias": ()}}}
    assert shapes(star.mu) == shapes(params)


def test_star_mask_tied_embeddings():
    tied = {"embedding": jnp.zeros((7, 4)), "final_norm": {"scale": jnp.ones(4)},
            "block_0": {"attn": {"query_norm": {"scale": jnp.ones(3)}, "out": jnp.zeros((4, 4))}}}
    assert adalayer_star_mask(tied) == {"embedding": True, "final_norm": {"scale": True},
                                        "block_0": {"attn": {"query_norm": {"scale": True},
                                                             "out": False}}}


@pytest.mark.parametrize("kwargs,name", [
    (dict(learning_rate=-1.0), "learning_rate"), (dict(b1=1.0), "b1"), (dict(b2=-0.5), "b2"),
    (dict(b2=1.0), "b2"), (dict(eps=-1.0), "eps"), (dict(weight_decay=-0.1), "weight_decay"),
])
def test_errors_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        adalayer(**{"learning_rate": 0.1, **kwargs})
