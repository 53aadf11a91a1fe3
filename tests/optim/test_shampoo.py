"""Shampoo: a trajectory against a float64 NumPy implementation of Gupta et al. 2018's Algorithm 2
with grafting, a win over Adam on an ill-conditioned quadratic, jit, and argument errors."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim.shampoo import shampoo

SHAPES = {"w": (6, 4), "bias": (4,), "wide": (3, 20)}
MAX_PRECOND_DIM = 10


def np_inverse_root(stat, exponent, matrix_eps, eps):
    w, v = np.linalg.eigh(stat)
    w = np.maximum(w, 0.0)
    w = w + matrix_eps * w.max() + eps
    return v @ np.diag(w ** (-1.0 / exponent)) @ v.T


def np_shampoo(params, grads_per_step, lr, b1, b2, eps, wd, freq, start, graft, graft_eps,
               matrix_eps, exponent=None, stat_freq=1):
    """Float64 reference, one param at a time, with explicit unfoldings."""
    params = {k: np.array(v, np.float64) for k, v in params.items()}
    state = {}
    for k, p in params.items():
        axes = [i for i, n in enumerate(p.shape) if n <= MAX_PRECOND_DIM] if p.ndim >= 2 else []
        state[k] = dict(m=np.zeros_like(p), v=np.zeros_like(p), axes=axes,
                        L=[np.zeros((p.shape[i],) * 2) for i in axes],
                        R=[np.eye(p.shape[i]) for i in axes])
    new = 1.0 if b2 == 1 else 1 - b2  # b2 = 1: sums, as in the original paper
    trajectory = []
    for t, grads in enumerate(grads_per_step, start=1):
        lr_t = lr(t - 1) if callable(lr) else lr
        for k, p in params.items():
            g, s = np.array(grads[k], np.float64), state[k]
            for j, i in enumerate(s["axes"]):
                if (t - 1) % stat_freq == 0:
                    unfolded = np.moveaxis(g, i, 0).reshape(g.shape[i], -1)
                    s["L"][j] = b2 * s["L"][j] + new * unfolded @ unfolded.T
            if graft == "adam":
                s["v"] = b2 * s["v"] + new * g ** 2
                debias = 1.0 if b2 == 1 else 1 - b2 ** t
                graft_dir = g / (np.sqrt(s["v"] / debias) + graft_eps)
            else:
                graft_dir = g
            if t >= start and (t - start) % freq == 0:
                e = exponent or 2 * len(s["axes"])
                s["R"] = [np_inverse_root(L, e, matrix_eps, eps) for L in s["L"]]
            if s["axes"] and t >= start:
                pre = g
                for j, i in enumerate(s["axes"]):
                    pre = np.moveaxis(np.tensordot(s["R"][j], pre, axes=([1], [i])), 0, i)
                direction = np.linalg.norm(graft_dir) / np.linalg.norm(pre) * pre
            else:
                direction = graft_dir
            s["m"] = b1 * s["m"] + (1 - b1) * direction
            update = s["m"] / (1 - b1 ** t)
            params[k] = p - lr_t * (update + wd * p)
        trajectory.append(dict(params))
    return trajectory


def random_tree(rng):
    return {k: rng.normal(size=shape).astype(np.float32) for k, shape in SHAPES.items()}


# Float32 eigh resolves eigenvalues to ~1e-7 lambda_max, so a cached root of a rank-deficient
# statistic (the 6x4 matrix's 6x6 statistic after one step has rank 4) damped by only
# 1e-6 lambda_max is ~1% off in its null space, which later gradients reach: freq 3 from step 1
# runs with matrix_eps 1e-4.
@pytest.mark.parametrize("freq,start,graft,matrix_eps,stat_freq", [
    (1, 1, "adam", 1e-6, 1), (3, 1, "adam", 1e-4, 1), (3, 4, "sgd", 1e-6, 1),
    (2, 3, "sgd", 1e-6, 1), (3, 2, "adam", 1e-4, 2)])
def test_trajectory_matches_numpy_reference(freq, start, graft, matrix_eps, stat_freq):
    rng = np.random.default_rng(freq + 10 * start)
    params = random_tree(rng)
    grads_per_step = [random_tree(rng) for _ in range(12)]
    lr = optax.linear_schedule(0.05, 0.01, 12)
    hyper = dict(b1=0.9, b2=0.95, eps=1e-12, graft=graft, graft_eps=1e-8, matrix_eps=matrix_eps)
    tx = shampoo(lr, weight_decay=0.1, precondition_frequency=freq,
                 start_preconditioning_step=start, max_precond_dim=MAX_PRECOND_DIM,
                 statistics_frequency=stat_freq, **hyper)
    reference = np_shampoo(params, grads_per_step, lr, wd=0.1, freq=freq, start=start,
                           stat_freq=stat_freq, **hyper)

    p = jax.tree.map(jnp.asarray, params)
    state = tx.init(p)
    step = jax.jit(tx.update)
    for grads, expected in zip(grads_per_step, reference):
        updates, state = step(jax.tree.map(jnp.asarray, grads), state, p)
        p = optax.apply_updates(p, updates)
        for k in SHAPES:
            np.testing.assert_allclose(p[k], expected[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_state_shapes_and_explicit_exponent():
    params = jax.tree.map(jnp.asarray, random_tree(np.random.default_rng(0)))
    state = shampoo(0.1, max_precond_dim=MAX_PRECOND_DIM).init(params)[0]
    shapes = jax.tree.map(jnp.shape, state.stats)
    # one entry per axis; (0,) for an axis that is not preconditioned (1-D, or > max dim)
    assert shapes == {"w": ((6, 6), (4, 4)), "bias": ((0,),), "wide": ((3, 3), (0,))}
    assert jax.tree.map(jnp.shape, state.roots) == shapes
    assert state.nu is not None and shampoo(0.1, graft="sgd").init(params)[0].nu is None

    rng = np.random.default_rng(1)
    grads = [random_tree(rng) for _ in range(3)]
    hyper = dict(b1=0.5, b2=1.0, eps=0.0, graft="sgd", graft_eps=1e-8, matrix_eps=1e-6)
    reference = np_shampoo(params, grads, 0.1, wd=0.0, freq=1, start=1, exponent=2, **hyper)
    tx = shampoo(0.1, exponent=2, precondition_frequency=1, max_precond_dim=MAX_PRECOND_DIM,
                 **hyper)
    state = tx.init(params)
    p = params
    for g, expected in zip(grads, reference):
        updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, p)
        p = optax.apply_updates(p, updates)
    # eps=0 and summed statistics (b2=1): float32 inverse roots of nearly singular factors
    # differ from the float64 reference by up to ~4e-4 relative, by CPU (XLA's eigh kernels).
    for k in SHAPES:
        np.testing.assert_allclose(p[k], reference[-1][k], rtol=1e-3, atol=1e-5, err_msg=k)


def quadratic(seed=0, n=16, cond=1e3):
    """0.5 ||A W B||_F^2, A and B with log-spaced singular values: a Kronecker-factored
    Hessian (B B^T) x (A^T A) of condition number cond^2, Shampoo's ideal case."""
    rng = np.random.default_rng(seed)

    def factor():
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        return jnp.asarray(q @ np.diag(np.logspace(0, -np.log10(cond), n)) @ q.T, jnp.float32)

    a, b = factor(), factor()
    w0 = jnp.asarray(rng.normal(size=(n, n)), jnp.float32)
    return (lambda w: 0.5 * jnp.sum((a @ w @ b) ** 2)), w0


def final_loss(tx, loss, w0, steps):
    def body(carry, _):
        w, state = carry
        updates, state = tx.update(jax.grad(loss)(w), state, w)
        return (optax.apply_updates(w, updates), state), None

    (w, _), _ = jax.lax.scan(body, (w0, tx.init(w0)), None, length=steps)
    return float(loss(w))


def test_beats_adam_on_ill_conditioned_quadratic():
    loss, w0 = quadratic()
    lrs = [10.0 ** e for e in np.arange(-3, 0.5, 0.5)]
    steps = 50  # best lr for each; observed ratio ~0.2 (cond 1e3) and ~0.2 (cond 1e2)
    best_adam = min(final_loss(optax.adam(lr, b1=0.9, b2=0.95), loss, w0, steps) for lr in lrs)
    best_shampoo = min(final_loss(shampoo(lr, precondition_frequency=10), loss, w0, steps)
                       for lr in lrs)
    assert best_shampoo < 0.4 * best_adam, (best_shampoo, best_adam)


def test_jit_and_lr_schedule_count():
    params = {"w": jnp.ones((5, 3))}
    tx = shampoo(lambda count: 0.1 * (count + 1), b1=0.0, precondition_frequency=2)
    state = tx.init(params)
    step = jax.jit(tx.update)
    for count in range(4):
        updates, state = step({"w": jnp.full((5, 3), 2.0)}, state, params)
        # A constant gradient: the grafted direction has the Adam direction's norm, 1 per entry.
        np.testing.assert_allclose(jnp.linalg.norm(updates["w"]), 0.1 * (count + 1) * np.sqrt(15),
                                   rtol=1e-4)
    assert int(state[0].count) == 4


@pytest.mark.parametrize("kwargs,name", [
    (dict(learning_rate=-1.0), "learning_rate"), (dict(b1=1.0), "b1"), (dict(b1=-0.1), "b1"),
    (dict(b2=1.5), "b2"), (dict(precondition_frequency=0), "precondition_frequency"),
    (dict(start_preconditioning_step=0), "start_preconditioning_step"),
    (dict(max_precond_dim=0), "max_precond_dim"), (dict(exponent=0), "exponent"),
    (dict(statistics_frequency=0), "statistics_frequency"),
    (dict(exponent=-2.0), "exponent"), (dict(graft="adagrad"), "graft"),
    (dict(weight_decay=-0.1), "weight_decay"), (dict(matrix_eps=-1.0), "matrix_eps"),
])
def test_errors_name_the_argument(kwargs, name):
    kwargs = {"learning_rate": 0.1, **kwargs}
    with pytest.raises(ValueError, match=name):
        shampoo(**kwargs)
