"""Model: exact parameter counts, causality, rotary positions, variants, loss."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from lm.model import ModelConfig, Transformer, init_params, ladder
from lm.model.info import count_pytree_params, flops_per_token, param_counts
from lm.model.layers import apply_rotary, rotary_table
from lm.model.loss import next_token_loss


def small_cfg(**overrides) -> ModelConfig:
    model = base.get_config().model
    model.update(dict(d_model=32, n_layers=2, n_heads=4, max_seq_len=64))
    model.update(overrides)
    return ModelConfig.from_config(model, vocab_size=61, dtype="float32")


VARIANTS = [dict(norm=n, activation=a, qk_norm=q, tie_embeddings=t, n_kv_heads=kv)
            for n, a, q, t, kv in itertools.product(("rmsnorm", "layernorm"), ("gelu", "swiglu"),
                                                    (False, True), (False, True), (0, 2))]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_param_count_matches_params_pytree(variant):
    cfg = small_cfg(**variant)
    shapes = jax.eval_shape(lambda: init_params(Transformer(cfg), jax.random.PRNGKey(0), 8))
    counts = param_counts(cfg)
    assert count_pytree_params(shapes) == counts["total"]
    embedding = sum(math.prod(x.shape) for path, x in
                    jax.tree_util.tree_leaves_with_path(shapes)
                    if "embed" in jax.tree_util.keystr(path))
    assert embedding == counts["embedding"]


@pytest.mark.parametrize("size", list(ladder.SIZES))
def test_ladder_counts_match_params_pytree(size):
    model = base.get_config(size).model
    cfg = ModelConfig.from_config(model, vocab_size=257, dtype="float32")
    shapes = jax.eval_shape(lambda: init_params(Transformer(cfg), jax.random.PRNGKey(0), 8))
    assert count_pytree_params(shapes) == param_counts(cfg)["total"]


def test_ladder_spans_30k_to_1b():
    totals = [param_counts(ModelConfig.from_config(base.get_config(s).model, 257, "float32"))
              ["total"] for s in ladder.SIZES]
    assert totals == sorted(totals)
    assert 2e4 < totals[0] < 5e4 and 0.8e9 < totals[-1] < 1.3e9


def test_flops_per_token_kaplan_form():
    cfg = small_cfg(tie_embeddings=True)
    d, L, T, V = 32, 2, 16, 61
    matmul = L * (4 * d * d + 2 * d * 4 * d) + d * V
    assert flops_per_token(cfg, T) == 6 * matmul + 6 * L * T * d


@pytest.mark.parametrize("variant", VARIANTS[::5], ids=str)
def test_causal_future_tokens_do_not_change_past_logits(variant):
    cfg = small_cfg(**variant)
    model = Transformer(cfg)
    params = init_params(model, jax.random.PRNGKey(1), 16)
    tokens = jax.random.randint(jax.random.PRNGKey(2), (2, 16), 0, cfg.vocab_size)
    changed = tokens.at[:, 10:].set((tokens[:, 10:] + 7) % cfg.vocab_size)
    a = model.apply({"params": params}, tokens)
    b = model.apply({"params": params}, changed)
    assert a.shape == (2, 16, cfg.vocab_size) and a.dtype == jnp.float32
    np.testing.assert_allclose(a[:, :10], b[:, :10], atol=1e-5)
    assert not np.allclose(a[:, 10:], b[:, 10:])


def test_rotary_scores_depend_only_on_relative_position():
    cos, sin = rotary_table(32, 8, 10000.0)
    q = jax.random.normal(jax.random.PRNGKey(0), (1, 1, 1, 8))
    k = jax.random.normal(jax.random.PRNGKey(1), (1, 1, 1, 8))

    def score(i, j):
        qi = apply_rotary(q, cos[i:i + 1], sin[i:i + 1])
        kj = apply_rotary(k, cos[j:j + 1], sin[j:j + 1])
        return float(jnp.sum(qi * kj))

    assert score(5, 2) == pytest.approx(score(13, 10), rel=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 4), rel=1e-3)
    np.testing.assert_allclose(apply_rotary(q, cos[:1], sin[:1]), q, atol=1e-7)  # position 0


def test_bfloat16_activations_keep_float32_params_and_logits():
    cfg = small_cfg()
    cfg16 = ModelConfig(**{**vars(cfg), "dtype": "bfloat16"})
    model = Transformer(cfg16)
    params = init_params(model, jax.random.PRNGKey(0), 8)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
    tokens = jnp.zeros((1, 8), jnp.int32)
    logits16 = model.apply({"params": params}, tokens)
    logits32 = Transformer(cfg).apply({"params": params}, tokens)
    assert logits16.dtype == jnp.float32
    np.testing.assert_allclose(logits16, logits32, atol=0.05)


def test_initialisation_scales():
    cfg = small_cfg(d_model=256, n_heads=4, n_layers=8, tie_embeddings=False)
    params = init_params(Transformer(cfg), jax.random.PRNGKey(0), 8)
    block = params["block_0"]
    assert np.std(block["mlp"]["up"]["kernel"]) == pytest.approx(0.02, rel=0.05)
    assert np.std(block["mlp"]["down"]["kernel"]) == pytest.approx(0.02 / 4, rel=0.05)
    assert np.std(block["attn"]["out"]["kernel"]) == pytest.approx(0.02 / 4, rel=0.05)
    assert np.all(block["attn_norm"]["scale"] == 1)


def test_loss_is_cross_entropy_plus_z_loss():
    logits = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 5)) * 3
    targets = jnp.array([[0, 1, 2], [3, 4, 0]])
    log_probs = jax.nn.log_softmax(logits)
    ce = -np.mean(np.take_along_axis(np.asarray(log_probs), np.asarray(targets)[..., None], -1))
    z = np.mean(np.square(jax.nn.logsumexp(logits, axis=-1)))
    objective, reported = next_token_loss(logits, targets, 1e-2)
    assert float(reported) == pytest.approx(ce, rel=1e-6)
    assert float(objective) == pytest.approx(ce + 1e-2 * z, rel=1e-6)
    assert float(next_token_loss(logits, targets, 0.0)[0]) == pytest.approx(ce, rel=1e-6)


@pytest.mark.parametrize("variant", [dict(), dict(tie_embeddings=False, n_kv_heads=2)],
                         ids=["tied", "untied-gqa"])
def test_flat_weight_matmuls_give_the_einsums_logits_and_gradients(variant):
    """ModelConfig.flat_matmuls (CPU) multiplies (tokens, k) matrices: the same model, values
    and gradients equal to float32 round-off."""
    import dataclasses
    cfg = small_cfg(**variant)
    params = init_params(Transformer(cfg), jax.random.PRNGKey(0), 16)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (3, 17), 0, cfg.vocab_size)

    def loss_and_grads(flat):
        model = Transformer(dataclasses.replace(cfg, flat_matmuls=flat))
        return jax.value_and_grad(lambda p: next_token_loss(
            model.apply({"params": p}, tokens[:, :-1]), tokens[:, 1:], 0.0)[0])(params)

    (loss, grads), (flat_loss, flat_grads) = loss_and_grads(False), loss_and_grads(True)
    tokens_by_width = f"f32[{3 * 16},{cfg.d_model}]"  # the activations as one matrix
    assert tokens_by_width in str(jax.make_jaxpr(lambda: loss_and_grads(True))())
    assert tokens_by_width not in str(jax.make_jaxpr(lambda: loss_and_grads(False))())
    np.testing.assert_allclose(flat_loss, loss, rtol=1e-6)
    for got, want in zip(jax.tree_util.tree_leaves(flat_grads), jax.tree_util.tree_leaves(grads)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)


def test_weight_matmuls_are_flattened_for_cpu_runs_only():
    config = base.get_config()
    assert {backend: ModelConfig.for_run(config, 61, backend).flat_matmuls
            for backend in ("cpu", "gpu", "tpu")} == {"cpu": True, "gpu": False, "tpu": False}
