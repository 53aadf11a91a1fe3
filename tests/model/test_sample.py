"""Decoding with a KV cache (lm/model/decode.py) and python -m lm.sample: cached greedy decoding
chooses the same tokens as recomputing the full forward pass over the whole sequence for every
new token, on the model variants the cache touches (grouped-query heads, QK-norm, scanned
layers, untied heads, muP, MX-quantized matmuls), and on a trained run loaded from its
checkpoint."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from lm import sample, train
from lm.errors import ConfigError
from lm.model import ModelConfig, Transformer, init_cache, init_params
from lm.model import mx as mx_lib
from lm.model.decode import generate, next_token


def greedy_by_recomputation(model, params, prompt, new_tokens):
    """The reference: for every new token, the full forward pass over the whole sequence (in a
    buffer of the final length, so that it compiles once: causal attention keeps the positions
    after the last token out of its logits)."""
    length = prompt.shape[1]
    sequence = np.zeros((prompt.shape[0], length + new_tokens), np.int32)
    sequence[:, :length] = prompt
    forward = jax.jit(lambda tokens: model.apply({"params": params}, tokens))
    for position in range(length, length + new_tokens):
        sequence[:, position] = np.argmax(forward(sequence)[:, position - 1], axis=-1)
    return sequence[:, length:]


def random_model(seed=0, precision=None, **fields):
    """A model whose random weights are large enough (init_std 0.3) that greedy decoding does
    not repeat one token: the cache is exercised at every position."""
    c = base.get_config()
    c.model.update(dict(d_model=32, n_layers=2, n_heads=4, max_seq_len=40, init_std=0.3,
                        **fields))
    c.precision.update(precision or {})
    model = Transformer(ModelConfig.from_config(c.model, 101, "float32",
                                                **mx_lib.formats_from_config(c.precision)))
    return model, init_params(model, jax.random.PRNGKey(seed), 8)


@pytest.mark.slow
@pytest.mark.parametrize("fields", [
    {},
    dict(n_kv_heads=2, qk_norm=True, activation="swiglu", norm="layernorm",
         tie_embeddings=False, scan_layers=True),
    dict(n_kv_heads=1, mup_base_width=16, remat="full",
         precision=dict(mx_weights="mxfp8_e4m3", mx_activations="mxfp8_e4m3")),
], ids=["mha", "gqa_qknorm_scanned_untied", "mqa_mup_remat_mxfp8"])
def test_cached_greedy_decoding_equals_recomputing_the_full_forward_pass(fields):
    model, params = random_model(**fields)
    prompt = jax.random.randint(jax.random.PRNGKey(1), (3, 7), 0, 101, jnp.int32)
    cached = np.asarray(generate(model, params, prompt, jax.random.PRNGKey(0), new_tokens=30))
    recomputed = greedy_by_recomputation(model, params, prompt, 30)
    np.testing.assert_array_equal(cached, recomputed)
    assert len(np.unique(cached)) > 5  # a varied sequence, not one repeated token


def test_cache_holds_each_layers_keys_and_the_position():
    model, params = random_model(n_kv_heads=2, scan_layers=True)
    cache = init_cache(model, batch=3)
    assert cache["layers"]["attn"]["cached_key"].shape == (2, 3, 40, 2, 8)  # layers stacked
    tokens = jnp.ones((3, 5), jnp.int32)
    _, variables = model.apply({"params": params, "cache": cache}, tokens, decode=True,
                               mutable=["cache"])
    assert int(variables["cache"]["position"]) == 5
    assert not np.any(np.asarray(variables["cache"]["layers"]["attn"]["cached_key"])[:, :, 5:])


def test_sampling_follows_temperature_and_top_k():
    logits = jnp.log(jnp.asarray([[0.1, 0.2, 0.3, 0.4]] * 20000))
    draws = np.asarray(next_token(logits, jax.random.PRNGKey(0), temperature=1.0, top_k=0))
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / draws.size,
                               [0.1, 0.2, 0.3, 0.4], atol=0.015)
    top2 = np.asarray(next_token(logits, jax.random.PRNGKey(0), temperature=1.0, top_k=2))
    assert set(top2.tolist()) == {2, 3} and abs(np.mean(top2 == 3) - 4 / 7) < 0.015
    assert set(np.asarray(next_token(logits, jax.random.PRNGKey(0), temperature=1.0,
                                     top_k=1)).tolist()) == {3}
    cold = np.asarray(next_token(logits, jax.random.PRNGKey(0), temperature=0.1, top_k=0))
    assert np.mean(cold == 3) > 0.9  # (0.4 / 0.3)^10 = 18:1 against the next token
    assert set(np.asarray(next_token(logits, None, temperature=0.0, top_k=0)).tolist()) == {3}


@pytest.mark.slow
def test_lm_sample_continues_a_prompt_from_a_trained_runs_checkpoint(tiny_config, tmp_path,
                                                                    capsys):
    workdir = str(tmp_path / "run")
    with pytest.raises(ConfigError, match="has no config.json"):
        sample.load(workdir)
    tiny_config.train.update(dict(steps=20, checkpoint_every=10))
    train.run(tiny_config, workdir)
    trained = sample.load(workdir)
    assert trained.step == 20 and sample.load(workdir, step=10).step == 10
    tokenizer = trained.tokenizer
    prompt = "The kernel"
    greedy = sample.sample(trained, prompt, tokens=20)
    ids = np.asarray([[tokenizer.eos_id, *tokenizer.encode_batch([prompt])[0]]], np.int32)
    reference = greedy_by_recomputation(trained.model, trained.params, ids, 20)[0].tolist()
    end = reference.index(tokenizer.eos_id) if tokenizer.eos_id in reference else 20
    assert greedy == [tokenizer.decode(reference[:end])]
    assert sample.sample(trained, prompt, tokens=20, temperature=1.0, top_k=1) == greedy
    drawn = sample.sample(trained, prompt, tokens=20, temperature=1.0, samples=3, seed=1)
    assert drawn == sample.sample(trained, prompt, tokens=20, temperature=1.0, samples=3,
                                  seed=1) and len(set(drawn)) > 1
    with pytest.raises(ConfigError, match="model.max_seq_len=64 tokens; ask for 1 to"):
        sample.sample(trained, prompt, tokens=64)
    with pytest.warns(UserWarning, match="trained on 32 \\(data.seq_len\\)"):
        sample.sample(trained, prompt, tokens=30)
    fresh = sample.load(workdir)
    with pytest.raises(ConfigError, match="use temperature >= 0"):
        sample.sample(fresh, prompt, tokens=5, temperature=-1.0)
    assert "params" not in vars(fresh)  # refused before the checkpoint was read
    with pytest.raises(ConfigError, match="--step=7: .* checkpoints at steps \\[10, 20\\]"):
        sample.load(workdir, step=7)
    assert sample.main([f"--workdir={workdir}", f"--prompt={prompt}", "--tokens=20",
                        "--json"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert row["text"] == greedy[0] and row["step"] == 20
