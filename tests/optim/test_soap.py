"""optim.soap against a float64 NumPy transcription of the reference SOAP (nikhilvyas/SOAP,
soap.py), SOAP-without-rotations against Adam, jit, state structure and argument checks.

The NumPy oracle follows the current upstream reference literally, including its bookkeeping of
the first moment in the eigenbasis (rotated back and forth around every preconditioner update);
optim.soap keeps it in the original space, so agreement also checks that the two are the same.

Shapes are chosen so that the initial eigendecompositions are unique up to column signs: the null
space of G G^T for a (5, 4) gradient is one-dimensional. For (6, 4) or a preconditioned (4,)
vector the initial basis inside the degenerate null space is arbitrary (any rotation of it is a
valid eigh output), and the SOAP trajectory depends on that choice, in the reference too; those
shapes are tested by handing the oracle optim.soap's initial basis after checking that it is one.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim.soap import SoapState, soap

# --- float64 NumPy oracle: the reference's SOAP.step, one parameter group ---------------------

def merged_shape(shape, max_dim):
    new, cur = [], 1
    for sh in shape:
        if cur * sh > max_dim:
            if cur > 1:
                new.append(cur)
                cur = sh
            else:
                new.append(sh)
                cur = 1
        else:
            cur *= sh
    if cur > 1 or len(new) == 0:
        new.append(cur)
    return tuple(new)


class NumpySOAP:
    def __init__(self, lr, b1=0.95, b2=0.95, shampoo_beta=-1, eps=1e-8, weight_decay=0.01,
                 precondition_frequency=10, max_precond_dim=10000, merge_dims=False,
                 precondition_1d=False, normalize_grads=False, correct_bias=True, initial_q=None):
        self.lr = lr if callable(lr) else (lambda call: lr)
        self.b1, self.b2, self.eps, self.wd = b1, b2, eps, weight_decay
        self.shampoo_beta = shampoo_beta if shampoo_beta >= 0 else b2
        self.freq, self.max_dim, self.merge = precondition_frequency, max_precond_dim, merge_dims
        self.pre1d, self.normalize = precondition_1d, normalize_grads
        self.correct_bias = correct_bias
        self.initial_q = initial_q or {}
        self.state, self.calls = {}, 0

    def _rot(self, x, Q, back):
        shape = x.shape
        if self.merge:
            x = x.reshape(merged_shape(shape, self.max_dim))
        for mat in Q:
            if mat is None:
                x = np.transpose(x, list(range(1, x.ndim)) + [0])
            else:
                x = np.tensordot(x, mat, axes=([0], [1 if back else 0]))
        return x.reshape(shape)

    def _init(self, g):
        if g.ndim == 1:
            on = self.pre1d and g.shape[0] <= self.max_dim
            return [np.zeros((g.shape[0],) * 2) if on else None]
        shape = merged_shape(g.shape, self.max_dim) if self.merge else g.shape
        return [np.zeros((sh, sh)) if sh <= self.max_dim else None for sh in shape]

    def _update_preconditioner(self, name, g, st):
        if st["Q"] is not None:
            st["exp_avg"] = self._rot(st["exp_avg"], st["Q"], back=True)
        if self.merge and g.ndim != 1:
            g = g.reshape(merged_shape(g.shape, self.max_dim))
        for i, m in enumerate(st["GG"]):
            if m is not None:
                other = [d for d in range(g.ndim) if d != i]
                m += (1 - self.shampoo_beta) * (np.tensordot(g, g, axes=(other, other)) - m)
        if st["Q"] is None:
            st["Q"] = self.initial_q.get(name) or [
                None if m is None else np.flip(np.linalg.eigh(m + 1e-30 * np.eye(len(m)))[1], 1)
                for m in st["GG"]]
        if st["step"] > 0 and st["step"] % self.freq == 0:
            v = st["exp_avg_sq"]
            shape = v.shape
            if self.merge:
                v = v.reshape(merged_shape(shape, self.max_dim))
            new_q = []
            for i, (m, o) in enumerate(zip(st["GG"], st["Q"])):
                if m is None:
                    new_q.append(None)
                    continue
                idx = np.argsort(-np.diag(o.T @ m @ o), kind="stable")
                v = np.take(v, idx, axis=i)
                new_q.append(np.linalg.qr(m @ o[:, idx])[0])
            st["Q"], st["exp_avg_sq"] = new_q, v.reshape(shape)
        if st["step"] > 0:
            st["exp_avg"] = self._rot(st["exp_avg"], st["Q"], back=False)

    def step(self, params, grads):
        """One optimizer.step(): returns the new params (a dict of float64 arrays)."""
        lr, new = self.lr(self.calls), {}
        self.calls += 1
        for name, p in params.items():
            g = np.asarray(grads[name], np.float64)
            if name not in self.state:
                st = self.state[name] = dict(step=0, exp_avg=np.zeros_like(g), Q=None,
                                             exp_avg_sq=np.zeros_like(g), GG=self._init(g))
                self._update_preconditioner(name, g, st)
                new[name] = p.copy()
                continue
            st = self.state[name]
            g_proj = self._rot(g, st["Q"], back=False)
            st["step"] += 1
            st["exp_avg"] = self.b1 * st["exp_avg"] + (1 - self.b1) * g_proj
            st["exp_avg_sq"] = self.b2 * st["exp_avg_sq"] + (1 - self.b2) * g_proj ** 2
            denom = np.sqrt(st["exp_avg_sq"]) + self.eps
            step_size = lr
            if self.correct_bias:
                step_size *= (1 - self.b2 ** st["step"]) ** .5 / (1 - self.b1 ** st["step"])
            norm_grad = self._rot(st["exp_avg"] / denom, st["Q"], back=True)
            if self.normalize:
                norm_grad = norm_grad / (1e-30 + np.mean(norm_grad ** 2) ** .5)
            q = p - step_size * norm_grad
            if self.wd > 0:
                q = q - lr * self.wd * q
            new[name] = q
            self._update_preconditioner(name, g, st)
        return new


# --- a small fixed problem -------------------------------------------------------------------

STEPS = 12


def make_problem(shapes, seed=0):
    """Initial params and grad(t, params) = G_t + 0.5 * params with fixed random G_t."""
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    fixed = [{k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(STEPS)]

    def grad(t, p):
        return {k: fixed[t][k] + 0.5 * np.asarray(p[k], np.float64) for k in shapes}

    return params, grad


def soap_state(state) -> SoapState:
    """scale_by_soap's state inside soap()'s chain (direction, learning rate, weight decay)."""
    return state[0]


def run_jax(tx, params, grad, steps=STEPS, jit=True, state=None):
    """Params after each call of tx (float32), and the state after the first call."""
    p = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    state = tx.init(p) if state is None else state
    update = jax.jit(tx.update) if jit else tx.update
    trajectory, first_state = [], None
    for t in range(steps):
        g = {k: jnp.asarray(v, jnp.float32) for k, v in grad(t, p).items()}
        u, state = update(g, state, p)
        p = optax.apply_updates(p, u)
        trajectory.append({k: np.asarray(v, np.float64) for k, v in p.items()})
        first_state = state if first_state is None else first_state
    return trajectory, first_state


def run_numpy(ref, params, grad, steps=STEPS):
    p, trajectory = dict(params), []
    for t in range(steps):
        p = ref.step(p, grad(t, p))
        trajectory.append(p)
    return trajectory


def assert_trajectories_close(got, want, params0, rtol=1e-4, atol=1e-6, first_is_zero=True):
    """Per-step updates (not just params) agree; the first call must be a zero update."""
    prev_got, prev_want = params0, params0
    for t, (g, w) in enumerate(zip(got, want)):
        for k in w:
            np.testing.assert_allclose(g[k] - prev_got[k], w[k] - prev_want[k], rtol=rtol,
                                       atol=atol, err_msg=f"step {t}, param {k}")
            if t == 0 and first_is_zero:
                np.testing.assert_array_equal(g[k], np.asarray(params0[k], np.float32))
        prev_got, prev_want = g, w


WELL_POSED = {"w": (5, 4), "b": (2,), "big": (3, 20)}
COMMON = dict(learning_rate=0.02, b1=0.9, b2=0.95, weight_decay=0.1, max_precond_dim=10)


def oracle_kwargs(kwargs):
    return {("lr" if k == "learning_rate" else k): v for k, v in kwargs.items()}


@pytest.mark.parametrize("frequency", [1, 5])
@pytest.mark.parametrize("precondition_1d", [False, True])
def test_trajectory_matches_reference(frequency, precondition_1d):
    kwargs = dict(COMMON, precondition_frequency=frequency, precondition_1d=precondition_1d)
    params, grad = make_problem(WELL_POSED)
    got, _ = run_jax(soap(**kwargs), params, grad)
    want = run_numpy(NumpySOAP(**oracle_kwargs(kwargs)), params, grad)
    assert_trajectories_close(got, want, params)


@pytest.mark.parametrize("extra", [
    dict(shampoo_beta=0.8, normalize_grads=True),
    dict(correct_bias=False, eps=1e-6),
    dict(learning_rate=optax.linear_schedule(0.03, 0.005, STEPS)),
    dict(merge_dims=True, precondition_1d=True),
])
def test_options_match_reference(extra):
    kwargs = dict(COMMON, precondition_frequency=3, **extra)
    shapes = dict(WELL_POSED, t=(2, 2, 3), s=())  # (2, 2, 3) merges to (4, 3); () to (1,)
    params, grad = make_problem(shapes, seed=1)
    got, _ = run_jax(soap(**kwargs), params, grad)
    want = run_numpy(NumpySOAP(**oracle_kwargs(kwargs)), params, grad)
    assert_trajectories_close(got, want, params)


@pytest.mark.parametrize("frequency,precondition_1d", [(1, False), (5, False), (5, True)])
def test_degenerate_initial_basis(frequency, precondition_1d):
    """(6, 4) and (4,) parameters: optim.soap's initial Q is a valid eigh output (orthonormal,
    diagonalises the factor, eigenvalues non-increasing) and, handed to the oracle, gives the
    reference trajectory. (frequency 1 with a preconditioned (4,) vector is left out: its first
    QR refreshes act on rank-deficient factors, whose extra basis vectors are rounding noise.)"""
    kwargs = dict(COMMON, precondition_frequency=frequency, precondition_1d=precondition_1d)
    params, grad = make_problem({"w": (6, 4), "b": (4,), "big": (3, 20)}, seed=2)
    got, state = run_jax(soap(**kwargs), params, grad)
    # one region of one block per parameter (no block_size): q[0] is the parameter's basis
    q0 = {k: [None if q.size == 0 else np.asarray(q[0], np.float64) for q in regions[0]]
          for k, regions in soap_state(state).q.items()}
    factors = NumpySOAP(**oracle_kwargs(kwargs))
    factors.step(params, grad(0, params))
    for k, qs in q0.items():
        for m, q in zip(factors.state[k]["GG"], qs):
            assert (m is None) == (q is None)
            if q is not None:
                np.testing.assert_allclose(q.T @ q, np.eye(len(q)), atol=1e-5)
                d = q.T @ m @ q
                scale = np.abs(d).max()
                np.testing.assert_allclose(d, np.diag(np.diag(d)), atol=1e-5 * scale)
                assert np.all(np.diff(np.diag(d)) <= 1e-5 * scale)
    want = run_numpy(NumpySOAP(initial_q=q0, **oracle_kwargs(kwargs)), params, grad)
    assert_trajectories_close(got, want, params)


def test_eigenvector_signs_do_not_matter():
    """Flipping the sign of eigenbasis columns (the ambiguity of eigh and QR) leaves every later
    update unchanged: each rotation is undone with the same Q and V only sees squares."""
    kwargs = dict(COMMON, precondition_frequency=4, precondition_1d=True)
    params, grad = make_problem(WELL_POSED, seed=3)
    tx = soap(**kwargs)
    _, state = run_jax(tx, params, grad, steps=1)
    signs = lambda q: q * jnp.where(jnp.arange(q.shape[-1]) % 2 == 0, -1.0, 1.0)  # noqa: E731
    direction = soap_state(state)
    flipped = (direction._replace(q=jax.tree.map(lambda q: signs(q) if q.ndim == 3 else q,
                                                 direction.q)), *state[1:])
    p1 = {k: np.float32(v) for k, v in params.items()}
    shifted = lambda t, p: grad(t + 1, p)  # noqa: E731
    a, _ = run_jax(tx, p1, shifted, steps=STEPS - 1, state=state)
    b, _ = run_jax(tx, p1, shifted, steps=STEPS - 1, state=flipped)
    assert_trajectories_close(a, b, p1, rtol=1e-5, atol=1e-7, first_is_zero=False)


# --- no rotated dimension: SOAP is Adam one call late -----------------------------------------

def test_unrotated_soap_is_adam():
    """With every dim above max_precond_dim (and 1-D params not preconditioned) the rotations are
    identities, so SOAP's update at call c >= 1 on g_c is Adam's t-th step with t = c, eps added to
    the un-debiased sqrt(v) (the step scaled by sqrt(1 - b2^t) / (1 - b1^t)) and decay applied
    after the step: p <- (p - lr * step) * (1 - lr * wd). Its first call only returns zeros."""
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.99, 1e-8, 0.1
    params, grad = make_problem({"w": (3, 4), "b": (5,)}, seed=4)
    got, _ = run_jax(soap(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd, max_precond_dim=2),
                     params, grad)
    p, m, v, want = dict(params), {}, {}, []
    for t in range(STEPS):
        g = grad(t, p)
        if t > 0:
            for k in p:
                m[k] = b1 * m.get(k, 0) + (1 - b1) * g[k]
                v[k] = b2 * v.get(k, 0) + (1 - b2) * g[k] ** 2
                step = lr * (1 - b2 ** t) ** .5 / (1 - b1 ** t) * m[k] / (np.sqrt(v[k]) + eps)
                p[k] = (p[k] - step) * (1 - lr * wd)
        want.append(dict(p))
    assert_trajectories_close(got, want, params, rtol=1e-5)


def test_unrotated_soap_matches_optax_adam_shifted_by_one():
    """Against optax.adamw without decay on a fixed gradient sequence g_0, g_1, ...: SOAP's
    update at call c >= 1 equals optax's at call c - 1 on g_1, g_2, ... (optax adds eps to the
    debiased sqrt(v), a relative difference of order eps / sqrt(v))."""
    rng = np.random.default_rng(5)
    gs = [{"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)} for _ in range(STEPS)]
    params = {"w": jnp.zeros((3, 4))}
    tx_soap = soap(0.01, b1=0.9, b2=0.99, weight_decay=0.0, max_precond_dim=2)
    tx_adam = optax.adamw(0.01, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.0)
    s_soap, s_adam = tx_soap.init(params), tx_adam.init(params)
    u, s_soap = tx_soap.update(gs[0], s_soap, params)
    np.testing.assert_array_equal(u["w"], 0.0)
    for g in gs[1:]:
        u_soap, s_soap = tx_soap.update(g, s_soap, params)
        u_adam, s_adam = tx_adam.update(g, s_adam, params)
        np.testing.assert_allclose(u_soap["w"], u_adam["w"], rtol=1e-5, atol=1e-9)


# --- jit, state, arguments --------------------------------------------------------------------

@pytest.mark.slow
def test_jit_equals_eager_and_state_is_namedtuple():
    kwargs = dict(COMMON, precondition_frequency=2, precondition_1d=True)
    params, grad = make_problem(WELL_POSED, seed=6)
    tx = soap(**kwargs)
    jitted, chain_state = run_jax(tx, params, grad, steps=5, jit=True)
    state = soap_state(chain_state)
    eager, _ = run_jax(tx, params, grad, steps=5, jit=False)
    assert_trajectories_close(jitted, eager, params, rtol=1e-5, atol=1e-7)
    assert isinstance(state, SoapState) and isinstance(state, tuple)
    assert state._fields == ("count", "exp_avg", "exp_avg_sq", "gg", "q")
    assert int(state.count) == 1 and state.count.dtype == jnp.int32
    # one region of one block each: (blocks, d, d) factors, (blocks, 0) for an unrotated dim
    assert [q.shape for q in state.q["big"][0]] == [(1, 3, 3), (1, 0)]  # 20 > max_precond_dim
    assert [q.shape for q in state.gg["w"][0]] == [(1, 5, 5), (1, 4, 4)]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state)[1:])


def test_bfloat16_params_keep_float32_state():
    params = {"w": jnp.ones((4, 3), jnp.bfloat16)}
    tx = soap(0.01)
    state = tx.init(params)
    for _ in range(3):
        u, state = tx.update({"w": jnp.full((4, 3), 0.5, jnp.bfloat16)}, state, params)
    assert u["w"].dtype == jnp.bfloat16
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(soap_state(state))[1:])


@pytest.mark.parametrize("kwargs,name", [
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(b1=1.0), "b1"), (dict(b1=-0.1), "b1"), (dict(b2=1.5), "b2"),
    (dict(shampoo_beta=1.0), "shampoo_beta"),
    (dict(eps=0.0), "eps"), (dict(weight_decay=-0.1), "weight_decay"),
    (dict(precondition_frequency=0), "precondition_frequency"),
    (dict(max_precond_dim=0), "max_precond_dim"), (dict(block_size=-2), "block_size"),
    (dict(block_size=2.5), "block_size"),
])
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        soap(**{"learning_rate": 0.01, **kwargs})


def test_weight_decay_needs_params():
    tx = soap(0.01, weight_decay=0.1)
    params = {"w": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params))


# --- block partitioning (levanter's extension) ------------------------------------------------

ROW_BLOCKS, COL_BLOCKS = [(0, 3), (3, 6), (6, 8)], [(0, 3), (3, 6)]  # (8, 6) in blocks of 3


def split_blocks(tree):
    """{"w": (8, 6), "b": (5,)} -> the 6 blocks of w as separate parameters, and b."""
    blocks = {f"w{r0}{c0}": np.asarray(tree["w"])[r0:r1, c0:c1]
              for r0, r1 in ROW_BLOCKS for c0, c1 in COL_BLOCKS}
    return {**blocks, "b": np.asarray(tree["b"])}


def join_blocks(blocks):
    w = np.block([[np.asarray(blocks[f"w{r0}{c0}"]) for c0, _ in COL_BLOCKS]
                  for r0, _ in ROW_BLOCKS])
    return {"w": w, "b": np.asarray(blocks["b"])}


@pytest.mark.parametrize("frequency", [1, 5])
def test_blocked_soap_is_soap_on_each_block(frequency):
    """block_size=3 on an (8, 6) matrix (blocks 3x3 and, in the last row, 2x3) is exactly
    reference SOAP run on the 6 blocks as separate parameters: a block-diagonal
    preconditioner."""
    kwargs = dict(COMMON, precondition_frequency=frequency)
    params, grad = make_problem({"w": (8, 6), "b": (5,)}, seed=4)
    got, state = run_jax(soap(block_size=3, **kwargs), params, grad)
    want, _ = run_jax(soap(**kwargs), split_blocks(params),
                      lambda t, p: split_blocks(grad(t, join_blocks(p))))
    assert_trajectories_close(got, [join_blocks(w) for w in want], params, rtol=2e-4,
                              atol=2e-6)
    # two regions: 2x2 blocks of 3x3, and the last row's 1x2 blocks of 2x3
    assert [[q.shape for q in region] for region in soap_state(state).q["w"]] == [
        [(4, 3, 3), (4, 3, 3)], [(2, 2, 2), (2, 3, 3)]]


def test_block_size_larger_than_every_dim_is_the_reference():
    kwargs = dict(COMMON, precondition_frequency=5, precondition_1d=True)
    params, grad = make_problem(WELL_POSED)
    got, _ = run_jax(soap(block_size=64, **kwargs), params, grad)
    want, _ = run_jax(soap(**kwargs), params, grad)
    assert_trajectories_close(got, want, params, rtol=0, atol=0)
