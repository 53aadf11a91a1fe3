"""Sophia (optim/sophia.py): the update rule against a float64 NumPy implementation of
Algorithm 3 of Liu et al. 2023 (with optax's conventions, see the module docstring), the
Gauss-Newton-Bartlett estimator, and the sampled-label loss it differentiates."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm.model.loss import sampled_label_loss
from optim.sophia import gnb_estimator_diag_hessian, sophia

A = np.array([[0.5, 2.0, 0.1], [1.0, 0.01, 4.0]])  # curvatures of a separable quadratic
TOKENS = 16


def quadratic_problem(steps, seed=0):
    """grad(t, p) = A p + noise_t; the "sampled loss" 0.5 sum A p^2 gives g^ = A p, so the GNB
    estimate is TOKENS (A p)^2, deterministic."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(steps,) + A.shape)
    p0 = rng.normal(size=A.shape)
    return p0, (lambda t, p: A * p + noise[t])


def numpy_sophia(p, grad, steps, lr, b1, b2, rho, eps, wd, k):
    m, h, out = np.zeros_like(p), np.zeros_like(p), []
    for t in range(steps):
        g = grad(t, p)
        m = b1 * m + (1 - b1) * g
        m_hat = m / (1 - b1 ** (t + 1))
        direction = np.clip(m_hat / np.maximum(rho * h, eps), -1, 1)
        if t % k == 0:  # refreshed after the step's direction, at counts 0, k, 2k, ...
            h = b2 * h + (1 - b2) * TOKENS * (A * p) ** 2
        p = p - lr * (direction + wd * p)
        out.append(p.copy())
    return out


@pytest.mark.parametrize("k", [1, 3])
def test_trajectory_matches_numpy_algorithm(k):
    steps, kw = 25, dict(b1=0.9, b2=0.8, rho=0.05, eps=1e-12)
    p0, grad = quadratic_problem(steps)
    want = numpy_sophia(p0, grad, steps, lr=0.05, wd=0.1, k=k, **kw)
    tx = sophia(0.05, weight_decay=0.1, update_interval=k, **kw)

    def sampled_loss_fn(p, rng):
        del rng
        return 0.5 * jnp.sum(jnp.asarray(A, jnp.float32) * p * p), TOKENS

    p = jnp.asarray(p0, jnp.float32)
    state = tx.init(p)
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, sampled_loss_fn=sampled_loss_fn))
    clipped = 0
    for t in range(steps):
        g = jnp.asarray(grad(t, np.asarray(p, np.float64)), jnp.float32)
        u, state = update(g, state, p)
        clipped += int(np.sum(np.abs(np.asarray(u) + 0.05 * 0.1 * np.asarray(p)) >= 0.05 - 1e-7))
        p = optax.apply_updates(p, u)
        np.testing.assert_allclose(np.asarray(p), want[t], rtol=1e-4, atol=1e-5,
                                   err_msg=f"step {t}")
    assert 0 < clipped < steps * A.size  # both the clipped and the Newton-like regime occur


def test_gnb_estimate_is_tokens_times_squared_sampled_gradient():
    """One estimate: B g^ * g^ with g^ the gradient of the loss against labels sampled with the
    estimator's key (softmax regression, logits = x W)."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)

    def sampled_loss_fn(w, key):
        return sampled_label_loss((x @ w)[None], key)

    est = gnb_estimator_diag_hessian(seed=3)
    h, state = est.update(None, est.init(w), w, sampled_loss_fn=sampled_loss_fn)
    _, sample_key = jax.random.split(jax.random.PRNGKey(3))
    labels = np.asarray(jax.random.categorical(sample_key, (x @ w)[None], axis=-1))[0]
    probs = np.asarray(jax.nn.softmax(x @ w), np.float64)
    g = np.asarray(x, np.float64).T @ (probs - np.eye(5)[labels]) / 6  # d mean CE / dW
    np.testing.assert_allclose(np.asarray(h), 6 * g * g, rtol=1e-4, atol=1e-7)
    assert not np.array_equal(np.asarray(state.key), np.asarray(jax.random.PRNGKey(3)))


def test_sampled_label_gradient_has_zero_mean():
    """Bartlett's identity, what makes GNB an unbiased Gauss-Newton estimate: labels drawn from
    the model's own softmax give a cross-entropy gradient (w.r.t. the logits) of mean zero,
    while the labels follow the softmax."""
    logits = jnp.asarray([[[2.0, 0.0, -1.0, 0.5]]])
    grad = jax.vmap(lambda key: jax.grad(lambda z: sampled_label_loss(z, key)[0])(logits))(
        jax.random.split(jax.random.PRNGKey(0), 20000))
    np.testing.assert_allclose(np.asarray(grad.mean(axis=0)), 0.0, atol=0.01)
    assert sampled_label_loss(logits, jax.random.PRNGKey(0))[1] == 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(learning_rate=-1.0), "learning_rate=-1.0 must be >= 0"),
    (dict(estimator="exact"), "estimator='exact' is not one of gnb, hutchinson"),
    (dict(update_interval=0), "update_interval=0 must be an integer >= 1"),
    (dict(rho=0.0), "rho=0.0 must be > 0"),
    (dict(weight_decay=-0.1), "weight_decay=-0.1 must be >= 0"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sophia(**{"learning_rate": 1e-3, **kwargs})
