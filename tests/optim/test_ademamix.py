"""AdEMAMix and Simplified-AdEMAMix (optim/ademamix.py) against float64 NumPy transcriptions of
the authors' PyTorch steps (apple/ml-ademamix pytorch/ademamix.py; DepenM/Simplified-AdEMAMix
simplified_AdEMAMix.py), plus their exact special cases (AdamW) and hyperparameter checks."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim.ademamix import ademamix, simplified_ademamix

STEPS = 20
SHAPES = {"w": (5, 3), "b": (3,)}


def lr_schedule(k):
    """An optax-style schedule of the 0-based update count k: linear warmup over 4 updates
    from 1e-3 to 1e-2, then cosine decay to 1e-3 at update 20 (jnp, traceable)."""
    k = jnp.asarray(k, jnp.result_type(float))
    warm = 1e-3 + (1e-2 - 1e-3) * k / 4
    cos = 1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + jnp.cos(jnp.pi * jnp.minimum(k - 4, 16) / 16))
    return jnp.where(k < 4, warm, cos)


def lr_numpy(k):
    """lr_schedule in float64 Python."""
    if k < 4:
        return 1e-3 + (1e-2 - 1e-3) * k / 4
    return 1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + math.cos(math.pi * min(k - 4, 16) / 16))


def make_problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    grads = [{k: rng.normal(size=s) * (1 + i % 3) for k, s in SHAPES.items()}
             for i in range(STEPS)]
    return params, grads


def run_jax(tx, params, grads, jit=False, dtype=jnp.float32):
    params = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
    state = tx.init(params)
    update = jax.jit(tx.update) if jit else tx.update
    for g in grads:
        g = jax.tree.map(lambda x: jnp.asarray(x, dtype), g)
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def assert_trees_close(actual, expected, rtol=1e-5, atol=1e-6):
    for k in expected:
        np.testing.assert_allclose(np.asarray(actual[k], np.float64), expected[k], rtol=rtol,
                                   atol=atol, err_msg=k)


# --------------------------------------------------------------- float64 NumPy references


def np_linear_warmup_scheduler(step, alpha_end, alpha_start=0, warmup=1):
    if step < warmup:
        a = step / float(warmup)
        return (1.0 - a) * alpha_start + a * alpha_end
    return alpha_end


def np_linear_hl_warmup_scheduler(step, beta_end, beta_start=0, warmup=1):
    def f(beta, eps=1e-8):
        return math.log(0.5) / math.log(beta + eps) - 1

    def f_inv(t):
        return math.pow(0.5, 1 / (t + 1))

    if step < warmup:
        a = step / float(warmup)
        return f_inv((1.0 - a) * f(beta_start) + a * f(beta_end))
    return beta_end


def np_ademamix(params, grads, lr, b1, b2, b3, alpha, eps, weight_decay, b3_warmup,
                alpha_warmup, return_state=False):
    """apple/ml-ademamix AdEMAMix.step, one tensor at a time, in float64."""
    params = {k: v.copy() for k, v in params.items()}
    state = {k: dict(step=0, fast=np.zeros_like(v), slow=np.zeros_like(v),
                     sq=np.zeros_like(v)) for k, v in params.items()}
    for k_update, grad_tree in enumerate(grads):
        lr_k = lr(k_update)  # the torch scheduler's lr for this step: schedule(0-based count)
        for name, p in params.items():
            grad, st = grad_tree[name], state[name]
            st["step"] += 1
            bias_correction1 = 1 - b1 ** st["step"]
            bias_correction2 = 1 - b2 ** st["step"]
            if alpha_warmup is not None:
                a = np_linear_warmup_scheduler(st["step"], alpha_end=alpha, alpha_start=0,
                                               warmup=alpha_warmup)
            else:
                a = alpha
            if b3_warmup is not None:
                beta3 = np_linear_hl_warmup_scheduler(st["step"], beta_end=b3, beta_start=b1,
                                                      warmup=b3_warmup)
            else:
                beta3 = b3
            if b1 != 0.0:
                st["fast"] = st["fast"] * b1 + grad * (1 - b1)
                fast = st["fast"]
            else:
                fast = grad
            st["slow"] = st["slow"] * beta3 + grad * (1 - beta3)
            st["sq"] = st["sq"] * b2 + grad * grad * (1 - b2)
            denom = np.sqrt(st["sq"]) / math.sqrt(bias_correction2) + eps
            update = (fast / bias_correction1 + a * st["slow"]) / denom
            update = update + weight_decay * p
            params[name] = p - lr_k * update
    return (params, state) if return_state else params


def np_simplified_ademamix(params, grads, lr, b1, b2, alpha, eps, weight_decay, b1_warmup,
                           min_b1, bias_correction1, bias_correction2):
    """DepenM/Simplified-AdEMAMix SimAdEMAMix.step, one tensor at a time, in float64."""
    params = {k: v.copy() for k, v in params.items()}
    state = {k: dict(step=0, exp_avg=np.zeros_like(v), exp_avg_sq=np.zeros_like(v),
                     num_sum=0.0, den_sum=0.0) for k, v in params.items()}
    for k_update, grad_tree in enumerate(grads):
        lr_k = lr(k_update)
        for name, p in params.items():
            grad, st = grad_tree[name], state[name]
            st["step"] += 1
            if b1_warmup is not None:
                beta1 = np_linear_hl_warmup_scheduler(st["step"], beta_end=b1,
                                                      beta_start=min_b1, warmup=b1_warmup)
            else:
                beta1 = b1
            st["exp_avg"] = st["exp_avg"] * beta1 + grad
            st["num_sum"] = beta1 * st["num_sum"] + 1.0
            st["exp_avg_sq"] = st["exp_avg_sq"] * b2 + grad * grad * (1 - b2)
            st["den_sum"] = b2 * st["den_sum"] + (1.0 - b2)
            denom = np.sqrt(st["exp_avg_sq"]) + eps * math.sqrt(st["den_sum"])
            update = (alpha * grad + st["exp_avg"]) / denom
            if bias_correction1:
                update = update / st["num_sum"]
            if bias_correction2:
                update = update * math.sqrt(st["den_sum"])
            update = update + weight_decay * p
            params[name] = p - lr_k * update
    return params


# --------------------------------------------------------------- trajectories vs reference

ADEMAMIX_CASES = [
    dict(b1=0.9, b2=0.999, b3=0.999, alpha=4.0, b3_warmup=8, alpha_warmup=8),
    dict(b1=0.9, b2=0.999, b3=0.9999, alpha=2.0, b3_warmup=8, alpha_warmup=6),
    dict(b1=0.8, b2=0.99, b3=0.99, alpha=5.0, b3_warmup=None, alpha_warmup=None),
    dict(b1=0.0, b2=0.999, b3=0.999, alpha=3.0, b3_warmup=8, alpha_warmup=8),
]


@pytest.mark.parametrize("case", ADEMAMIX_CASES)
def test_ademamix_matches_reference_trajectory(case):
    params, grads = make_problem()
    kw = dict(eps=1e-8, weight_decay=0.1, **case)
    expected = np_ademamix(params, grads, lr_numpy, **kw)
    actual, _ = run_jax(ademamix(lr_schedule, **kw), params, grads)
    assert_trees_close(actual, expected)


@pytest.mark.parametrize("case", ADEMAMIX_CASES[:2])
def test_ademamix_float64_is_exact(case):
    """Under jax x64 with float64 params the transform reproduces the reference to ~1e-12."""
    params, grads = make_problem()
    kw = dict(eps=1e-8, weight_decay=0.1, **case)
    expected = np_ademamix(params, grads, lr_numpy, **kw)
    with jax.enable_x64(True):
        actual, _ = run_jax(ademamix(lr_schedule, **kw), params, grads, dtype=jnp.float64)
        assert_trees_close(actual, expected, rtol=1e-11, atol=1e-13)


def test_ademamix_slow_ema_precise_in_float32():
    """b3 = 0.9999: 1 - b3 is taken from float64 constants (as the reference's Python floats),
    not from float32(b3), whose 1 - b3 is off by 1.7e-4 relative."""
    params, grads = make_problem()
    kw = dict(b1=0.9, b2=0.999, b3=0.9999, alpha=2.0, eps=1e-8, weight_decay=0.1,
              b3_warmup=8, alpha_warmup=8)
    _, np_state = np_ademamix(params, grads, lr_numpy, return_state=True, **kw)
    _, state = run_jax(ademamix(lr_schedule, **kw), params, grads)
    for name in SHAPES:
        np.testing.assert_allclose(np.asarray(state[0].m2[name], np.float64),
                                   np_state[name]["slow"], rtol=2e-6, atol=1e-9)


def test_ademamix_warmup_schedules_at_one_based_step():
    """One step with b3_warmup = alpha_warmup = 2: the reference uses step 1, so alpha = alpha/2
    and b3 from a half-way half-life (a 0-based count would give alpha = 0 and b3 = b1)."""
    params, grads = make_problem(1)
    kw = dict(b1=0.9, b2=0.999, b3=0.999, alpha=8.0, eps=1e-8, weight_decay=0.0,
              b3_warmup=2, alpha_warmup=2)
    expected = np_ademamix(params, grads[:2], lr_numpy, **kw)
    actual, _ = run_jax(ademamix(lr_schedule, **kw), params, grads[:2])
    assert_trees_close(actual, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("bias_correction1", [False, True])
@pytest.mark.parametrize("bias_correction2", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 2.0])
def test_simplified_ademamix_matches_reference_trajectory(alpha, bias_correction1,
                                                          bias_correction2):
    params, grads = make_problem()
    kw = dict(b1=0.99, b2=0.95, alpha=alpha, eps=1e-8, weight_decay=0.1, b1_warmup=8,
              min_b1=0.9, bias_correction1=bias_correction1,
              bias_correction2=bias_correction2)
    # Without bias_correction1 the step is ~1/(1 - b1) times larger: use a smaller lr.
    scale = 1.0 if bias_correction1 else 0.05
    expected = np_simplified_ademamix(params, grads, lambda k: scale * lr_numpy(k), **kw)
    actual, _ = run_jax(simplified_ademamix(lambda k: scale * lr_schedule(k), **kw), params,
                        grads)
    assert_trees_close(actual, expected)


@pytest.mark.parametrize("bias_correction1", [False, True])
def test_simplified_ademamix_float64_is_exact(bias_correction1):
    params, grads = make_problem()
    kw = dict(b1=0.99, b2=0.95, alpha=2.0, eps=1e-8, weight_decay=0.1, b1_warmup=8,
              min_b1=0.9, bias_correction1=bias_correction1, bias_correction2=True)
    expected = np_simplified_ademamix(params, grads, lr_numpy, **kw)
    with jax.enable_x64(True):
        actual, _ = run_jax(simplified_ademamix(lr_schedule, **kw), params, grads,
                            dtype=jnp.float64)
        assert_trees_close(actual, expected, rtol=1e-11, atol=1e-13)


def test_simplified_ademamix_defaults_match_reference():
    params, grads = make_problem(2)
    expected = np_simplified_ademamix(params, grads, lambda k: 1e-3, b1=0.99, b2=0.95,
                                      alpha=0.0, eps=1e-8, weight_decay=0.0, b1_warmup=None,
                                      min_b1=0.9, bias_correction1=False,
                                      bias_correction2=True)
    actual, _ = run_jax(simplified_ademamix(1e-3), params, grads)
    assert_trees_close(actual, expected)


# --------------------------------------------------------------- exact special cases


def test_ademamix_alpha0_is_adamw():
    """alpha = 0 removes the slow EMA (b3 and its warmup are then irrelevant): AdEMAMix is
    AdamW with PyTorch/optax decoupled weight decay, theta <- theta - lr_t (adam + wd theta),
    i.e. the decay is multiplied by the scheduled lr and applied to the pre-step theta."""
    params, grads = make_problem(3)
    kw = dict(b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.1)
    actual, _ = run_jax(ademamix(lr_schedule, b3=0.95, alpha=0.0, b3_warmup=8,
                                 alpha_warmup=8, **kw), params, grads)
    expected, _ = run_jax(optax.adamw(lr_schedule, **kw), params, grads)
    assert_trees_close(actual, {k: np.asarray(v, np.float64) for k, v in expected.items()})


def test_simplified_ademamix_alpha0_both_corrections_is_adamw():
    """alpha = 0 with bias_correction1 and bias_correction2 (no b1 warmup): the momentum sum
    divided by its weight sum is Adam's bias-corrected EMA, so this is AdamW(b1, b2)."""
    params, grads = make_problem(4)
    kw = dict(b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1)
    actual, _ = run_jax(simplified_ademamix(lr_schedule, alpha=0.0, bias_correction1=True,
                                            bias_correction2=True, **kw), params, grads)
    expected, _ = run_jax(optax.adamw(lr_schedule, **kw), params, grads)
    assert_trees_close(actual, {k: np.asarray(v, np.float64) for k, v in expected.items()})


def test_simplified_ademamix_is_ademamix_with_b1_zero():
    """(alpha g + m) with m = sum b^i g equals alpha (g + alpha' m2) with m2 the (1 - b) EMA
    and alpha' = 1 / (alpha (1 - b)): Simplified-AdEMAMix(lr, b1=b, alpha, wd) ==
    AdEMAMix(alpha lr, b1=0, b3=b, alpha', wd / alpha) (bias_correction2 on, 1 off)."""
    params, grads = make_problem(5)
    b, a, wd = 0.99, 4.0, 0.1
    actual, _ = run_jax(simplified_ademamix(lambda k: 0.05 * lr_schedule(k), b1=b, b2=0.95,
                                            alpha=a, weight_decay=wd), params, grads)
    expected, _ = run_jax(ademamix(lambda k: a * 0.05 * lr_schedule(k), b1=0.0, b2=0.95, b3=b,
                                   alpha=1.0 / (a * (1.0 - b)), weight_decay=wd / a),
                          params, grads)
    assert_trees_close(actual, {k: np.asarray(v, np.float64) for k, v in expected.items()})


# --------------------------------------------------------------- jit, state, mask


@pytest.mark.parametrize("make", [
    lambda: ademamix(lr_schedule, alpha=3.0, weight_decay=0.1, b3_warmup=8, alpha_warmup=8),
    lambda: simplified_ademamix(lr_schedule, alpha=2.0, weight_decay=0.1, b1_warmup=8,
                                bias_correction1=True),
])
def test_jit_matches_eager(make):
    params, grads = make_problem(6)
    eager, _ = run_jax(make(), params, grads)
    jitted, state = run_jax(make(), params, grads, jit=True)
    assert_trees_close(jitted, {k: np.asarray(v, np.float64) for k, v in eager.items()},
                       rtol=1e-6, atol=1e-7)
    for leaf in jax.tree.leaves(state):
        assert isinstance(leaf, jax.Array)


def _state_bytes_per_param(tx, params):
    state = tx.init(params)
    n = sum(x.size for x in jax.tree.leaves(params))
    per_tensor = sum(x.nbytes for x in jax.tree.leaves(state) if x.ndim > 0)
    return per_tensor / n


def test_state_sizes():
    params = {k: jnp.zeros(s, jnp.float32) for k, s in SHAPES.items()}
    assert _state_bytes_per_param(ademamix(1e-3), params) == 12  # m1, m2, nu
    assert _state_bytes_per_param(ademamix(1e-3, b1=0.0), params) == 8  # m2, nu
    assert _state_bytes_per_param(simplified_ademamix(1e-3), params) == 8  # m, nu
    state = simplified_ademamix(1e-3).init(params)
    assert state[0].count.dtype == jnp.int32 and state[0].num_sum.shape == ()


def test_weight_decay_mask():
    params, grads = make_problem(7)
    mask = {"w": True, "b": False}
    kw = dict(b1=0.9, b2=0.999, b3=0.999, alpha=2.0, eps=1e-8, b3_warmup=8, alpha_warmup=8)
    masked, _ = run_jax(ademamix(lr_schedule, weight_decay=0.1, mask=mask, **kw), params, grads)
    full, _ = run_jax(ademamix(lr_schedule, weight_decay=0.1, **kw), params, grads)
    none, _ = run_jax(ademamix(lr_schedule, weight_decay=0.0, **kw), params, grads)
    np.testing.assert_allclose(masked["w"], full["w"])
    np.testing.assert_allclose(masked["b"], none["b"])


# --------------------------------------------------------------- hyperparameter checks


@pytest.mark.parametrize("kwargs, name", [
    (dict(learning_rate=-1e-3), "learning_rate"),
    (dict(b1=1.0), "b1"),
    (dict(b1=-0.1), "b1"),
    (dict(b2=1.0), "b2"),
    (dict(b3=1.5), "b3"),
    (dict(alpha=-1.0), "alpha"),
    (dict(eps=0.0), "eps"),
    (dict(eps=-1e-8), "eps"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(b3_warmup=0), "b3_warmup"),
    (dict(alpha_warmup=0.5), "alpha_warmup"),
])
def test_ademamix_bad_hyperparameters(kwargs, name):
    kwargs = {"learning_rate": 1e-3, **kwargs}
    with pytest.raises(ValueError, match=name):
        ademamix(**kwargs)


@pytest.mark.parametrize("kwargs, name", [
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(b1=1.0), "b1"),
    (dict(b2=-0.5), "b2"),
    (dict(alpha=-2.0), "alpha"),
    (dict(eps=0.0), "eps"),
    (dict(weight_decay=-1.0), "weight_decay"),
    (dict(b1_warmup=0), "b1_warmup"),
    (dict(min_b1=-0.1), "min_b1"),
    (dict(min_b1=0.995), "min_b1"),  # above b1 = 0.99
])
def test_simplified_ademamix_bad_hyperparameters(kwargs, name):
    kwargs = {"learning_rate": 1e-3, **kwargs}
    with pytest.raises(ValueError, match=name):
        simplified_ademamix(**kwargs)


@pytest.mark.parametrize("make", [ademamix, simplified_ademamix])
def test_a_float_learning_rate_is_its_constant_schedule(make):
    """learning_rate as a float and as optax.constant_schedule of it (a callable, which the
    hyperparameter checks must let through) give the same trajectory; the reference tests
    above pass schedules, so this ties the float path to them."""
    params, grads = make_problem(3)
    as_float, _ = run_jax(make(1e-2, weight_decay=0.1), params, grads[:6])
    as_schedule, _ = run_jax(make(optax.constant_schedule(1e-2), weight_decay=0.1), params,
                             grads[:6])
    assert_trees_close(as_schedule, {k: np.asarray(v) for k, v in as_float.items()}, rtol=0,
                       atol=0)
    for k in params:  # 6 steps of about lr each
        assert 0.01 < np.max(np.abs(np.asarray(as_float[k]) - params[k])) < 0.2, k
