"""Attention implementations against the einsum reference, the chunked cross-entropy against the
whole-logits one, and remat / scanned layers against the plain model (forward and gradient,
float32 round-off)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from lm.model import ModelConfig, Transformer, attention, init_params
from lm.model.loss import chunked_next_token_loss, next_token_loss
from lm.model.transformer import REMAT_POLICIES
from lm.train.step import make_loss_fn
from tests.model.scanned import stack_blocks

RTOL, ATOL = 2e-5, 2e-6


def qkv(heads, kv_heads, batch=2, seq=48, head_dim=16, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    return (jax.random.normal(keys[0], (batch, seq, heads, head_dim)),
            jax.random.normal(keys[1], (batch, seq, kv_heads, head_dim)),
            jax.random.normal(keys[2], (batch, seq, kv_heads, head_dim)))


def naive_attention(q, k, v, scale):
    """float64 NumPy: the causal softmax attention of each query head on its kv head."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    groups = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, groups, axis=2), np.repeat(v, groups, axis=2)
    scores = np.einsum("bthd,bshd->bhts", q, k) * scale
    seq = q.shape[1]
    scores = np.where(np.tril(np.ones((seq, seq), bool)), scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.einsum("bhts,bshd->bthd", probs, v)


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (4, 2), (6, 1)])
@pytest.mark.parametrize("implementation", ["einsum", "xla"])
def test_every_cpu_implementation_is_causal_softmax_attention(implementation, heads, kv_heads):
    q, k, v = qkv(heads, kv_heads)
    got = attention.attend(q, k, v, implementation=implementation, scale=0.25,
                           dtype=jnp.float32)
    np.testing.assert_allclose(got, naive_attention(q, k, v, 0.25), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), pytest.param(4, 2, marks=pytest.mark.slow)])
def test_xla_equals_einsum_in_forward_and_gradient(heads, kv_heads):
    q, k, v = qkv(heads, kv_heads, seed=1)
    cotangent = jax.random.normal(jax.random.PRNGKey(2), q.shape)

    def loss(implementation):
        return lambda q, k, v: jnp.sum(cotangent * attention.attend(
            q, k, v, implementation=implementation, scale=0.25, dtype=jnp.float32))

    reference = jax.grad(loss("einsum"), argnums=(0, 1, 2))(q, k, v)
    for got, want in zip(jax.grad(loss("xla"), argnums=(0, 1, 2))(q, k, v), reference):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_auto_resolves_per_backend():
    assert [attention.resolve("auto", b) for b in ("gpu", "tpu", "cpu")] == [
        "cudnn", "splash", "einsum"]
    assert attention.resolve("xla", "tpu") == "xla"


def model_config(**model):
    c = base.get_config()
    c.model.update(dict(d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, max_seq_len=64,
                        **model))
    return ModelConfig.for_run(c, 97)


def model_loss_and_grad(cfg, params, tokens):
    model = Transformer(cfg)

    def loss(params):
        return next_token_loss(model.apply({"params": params}, tokens[:, :-1]),
                               tokens[:, 1:], 1e-3)[0]
    return jax.jit(jax.value_and_grad(loss))(params)


TOKENS = jax.random.randint(jax.random.PRNGKey(3), (4, 33), 0, 97)


@pytest.mark.parametrize("remat", [r if r == "full" else pytest.param(r, marks=pytest.mark.slow)
                                   for r in sorted(set(REMAT_POLICIES) - {"none"})])
def test_remat_changes_memory_not_values(remat):
    cfg = model_config()
    params = init_params(Transformer(cfg), jax.random.PRNGKey(0), 32)
    want = model_loss_and_grad(cfg, params, TOKENS)
    got = model_loss_and_grad(dataclasses.replace(cfg, remat=remat), params, TOKENS)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1])):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("remat", ["none", pytest.param("full", marks=pytest.mark.slow)])
def test_scanned_layers_compute_the_unrolled_model(remat):
    cfg = model_config()
    params = init_params(Transformer(cfg), jax.random.PRNGKey(0), 32)
    want_loss, want_grad = model_loss_and_grad(cfg, params, TOKENS)
    scanned = dataclasses.replace(cfg, scan_layers=True, remat=remat)
    shapes = jax.eval_shape(lambda: init_params(Transformer(scanned), jax.random.PRNGKey(0), 32))
    stacked = stack_blocks(params)
    assert jax.tree.map(lambda x: x.shape, stacked) == jax.tree.map(lambda x: x.shape, shapes)
    got_loss, got_grad = model_loss_and_grad(scanned, stacked, TOKENS)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(got_grad), jax.tree.leaves(stack_blocks(want_grad))):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("chunk", [1, 7, pytest.param(16, marks=pytest.mark.slow),
                                   pytest.param(40, marks=pytest.mark.slow)])
@pytest.mark.parametrize("z_loss", [0.0, 1e-3])
def test_chunked_cross_entropy_equals_the_whole_logits(chunk, z_loss):
    keys = jax.random.split(jax.random.PRNGKey(4), 3)
    hidden = jax.random.normal(keys[0], (3, 33, 16))
    head = jax.random.normal(keys[1], (101, 16)) * 0.5
    targets = jax.random.randint(keys[2], (3, 33), 0, 101)

    def whole(hidden, head):
        return next_token_loss(jnp.einsum("btd,vd->btv", hidden, head) * 0.5, targets, z_loss)

    def chunked(hidden, head):
        return chunked_next_token_loss(hidden, head, targets, z_loss, chunk, 0.5)

    (want, want_ce), (got, got_ce) = whole(hidden, head), chunked(hidden, head)
    np.testing.assert_allclose([got, got_ce], [want, want_ce], rtol=1e-6)
    for fn_grads in zip(jax.grad(lambda *a: chunked(*a)[0], argnums=(0, 1))(hidden, head),
                        jax.grad(lambda *a: whole(*a)[0], argnums=(0, 1))(hidden, head)):
        np.testing.assert_allclose(*fn_grads, rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_the_train_loss_with_chunks_is_the_whole_loss():
    cfg = model_config(tie_embeddings=False)
    model = Transformer(cfg)
    params = init_params(model, jax.random.PRNGKey(0), 32)
    whole = jax.value_and_grad(make_loss_fn(model, 1e-3), has_aux=True)(params, TOKENS)
    chunked = jax.value_and_grad(make_loss_fn(model, 1e-3, loss_chunk=8), has_aux=True)(
        params, TOKENS)
    np.testing.assert_allclose(chunked[0][0], whole[0][0], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(chunked[1]), jax.tree.leaves(whole[1])):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
