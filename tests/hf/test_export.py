"""lm.export: every exported variant computes optiscale's logits in transformers (float32, CPU)
to float32 round-off, decodes greedily to the same tokens, and its tokenizer encodes text to
the same ids; refused models and an existing --hf_dir fail with their fix."""
import os

import jax
import numpy as np
import pytest

from configs import base
from data.tokenizer import ByteTokenizer, HFTokenizer, train_bpe
from lm import export, sample, train
from lm.errors import ConfigError
from lm.model import ModelConfig, Transformer, init_params
from lm.model.decode import generate

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# Logits agree to float32 round-off: max |difference| <= TOLERANCE x max |logit| (measured
# differences are below 1e-6 x that scale's order of a few units).
TOLERANCE = 1e-5
GREEDY_TOKENS = 30
PARAGRAPH = ("Tokenizers must agree exactly. Ünïcödé, emoji 🙂, tabs\tand  double spaces,\n"
             "code: def f(x): return x ** 2  # <|endoftext|> stays plain text\n\n"
             "Numbers 1234567 and punctuation!?")

VARIANTS = {  # name: (config.model overrides, ModelConfig.from_config options, architecture)
    "default_rmsnorm_gelu": ({}, {}, "ArceeForCausalLM"),
    "swiglu": (dict(activation="swiglu"), {}, "LlamaForCausalLM"),
    "swiglu_qk_norm_gqa": (dict(activation="swiglu", qk_norm=True, n_kv_heads=2), {},
                           "Qwen3ForCausalLM"),
    "layernorm_gelu": (dict(norm="layernorm"), {}, "Starcoder2ForCausalLM"),
    "untied_scanned": (dict(tie_embeddings=False, scan_layers=True), {}, "ArceeForCausalLM"),
    "head_dim_rope_base": (dict(head_dim=16, rope_base=500.0, d_ff=48), {}, "ArceeForCausalLM"),
    "mup_tied": (dict(mup_base_width=16, n_kv_heads=1), {}, "ArceeForCausalLM"),
    "mup_untied_qk_norm": (dict(mup_base_width=8, activation="swiglu", qk_norm=True,
                                tie_embeddings=False), {}, "Qwen3ForCausalLM"),
    "norm_affine_none": ({}, dict(norm_affine="none"), "ArceeForCausalLM"),
    "norm_affine_bfloat16": (dict(norm="layernorm"), dict(norm_affine="bfloat16"),
                             "Starcoder2ForCausalLM"),
}


def tiny_model(overrides: dict, options: dict | None = None, vocab: int = 257):
    """A 2-layer model with random parameters, perturbed so that norm scales and biases are
    not their initial ones (an export that dropped them would differ)."""
    c = base.get_config()
    c.model.update(dict(d_model=32, n_layers=2, n_heads=4, max_seq_len=64, **overrides))
    cfg = ModelConfig.from_config(c.model, vocab, "float32", **(options or {}))
    model = Transformer(cfg)
    params = init_params(model, jax.random.PRNGKey(0), 8)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    noisy = [x + 0.2 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return model, jax.tree_util.tree_unflatten(tree, noisy)


def hf_logits(out, tokens):
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        return model, model(torch.tensor(tokens)).logits.numpy()


def until_eos(row, eos):
    row = list(row)
    return row[:row.index(eos) + 1] if eos in row else row


# The fast lane runs one model of each architecture and muP; the rest are slow.
SLOW_VARIANTS = ("untied_scanned", "head_dim_rope_base", "mup_tied", "norm_affine_none",
                 "norm_affine_bfloat16")


@pytest.mark.parametrize("variant", [pytest.param(v, marks=pytest.mark.slow)
                                     if v in SLOW_VARIANTS else v for v in VARIANTS])
def test_exported_logits_and_greedy_decoding_match(variant, tmp_path):
    overrides, options, architecture = VARIANTS[variant]
    model, params = tiny_model(overrides, options)
    out = str(tmp_path / "hf")
    assert export.write_model_dir(out, params, model.cfg, ByteTokenizer()) == architecture
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json"} <= set(os.listdir(out))
    tokens = np.random.default_rng(0).integers(0, 257, (2, 48))
    ours = np.asarray(model.apply({"params": params}, tokens))
    hf_model, theirs = hf_logits(out, tokens)
    assert hf_model.config.architectures == [architecture]
    diff, scale = np.abs(ours - theirs).max(), np.abs(ours).max()
    print(f"{variant}: max |logit diff| {diff:.3g} at logit scale {scale:.3g}")
    assert diff <= TOLERANCE * scale

    prompt = tokens[:1, :8].astype(np.int32)
    greedy = np.asarray(generate(model, params, prompt, jax.random.PRNGKey(0),
                                 new_tokens=GREEDY_TOKENS))[0]
    with torch.no_grad():
        hf_greedy = hf_model.generate(torch.tensor(prompt, dtype=torch.long), do_sample=False,
                                      max_new_tokens=GREEDY_TOKENS).numpy()[0, prompt.shape[1]:]
    assert until_eos(hf_greedy, 256) == until_eos(greedy, 256)


def check_tokenizer(tokenizer, out):
    """The exported tokenizer gives optiscale's ids, with or without special tokens."""
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    ids = tokenizer.encode_batch([PARAGRAPH])[0]
    assert hf_tok(PARAGRAPH)["input_ids"] == ids
    assert hf_tok(PARAGRAPH, add_special_tokens=False)["input_ids"] == ids
    assert hf_tok.eos_token_id == tokenizer.eos_id
    assert hf_tok.decode(ids) == tokenizer.decode(ids) == PARAGRAPH


def test_byte_and_bpe_tokenizers_encode_to_the_same_ids(tmp_path):
    model, params = tiny_model({})
    export.write_model_dir(str(tmp_path / "byte"), params, model.cfg, ByteTokenizer())
    check_tokenizer(ByteTokenizer(), str(tmp_path / "byte"))
    docs = [PARAGRAPH.replace("Numbers", w) for w in ("alpha", "beta", "gamma", "delta")] * 20
    tokenizers = pytest.importorskip("tokenizers")
    bpe = HFTokenizer(tokenizers.Tokenizer.from_str(train_bpe([docs], 300)), "bpe300-test")
    model, params = tiny_model({}, vocab=bpe.vocab_size)
    export.write_model_dir(str(tmp_path / "bpe"), params, model.cfg, bpe)
    check_tokenizer(bpe, str(tmp_path / "bpe"))


@pytest.mark.parametrize("overrides, message", [
    (dict(norm="layernorm", activation="swiglu"), "model.norm=layernorm, model.activation=swiglu"),
    (dict(qk_norm=True), "model.qk_norm=True"),
    (dict(norm="layernorm", head_dim=16), "head_dim=16"),
])
def test_models_without_an_architecture_are_refused(overrides, message, tmp_path):
    model, params = tiny_model(overrides)
    with pytest.raises(ConfigError, match="no standard transformers architecture") as err:
        export.write_model_dir(str(tmp_path / "hf"), params, model.cfg, ByteTokenizer())
    assert message in str(err.value) and "LlamaForCausalLM" in str(err.value)
    assert not os.path.exists(tmp_path / "hf") and os.listdir(tmp_path) == []


def test_mx_run_exports_master_weights_with_a_warning(tmp_path):
    c = base.get_config()
    c.model.update(dict(d_model=32, n_layers=2, n_heads=4, max_seq_len=64))
    c.precision.update(dict(mx_weights="mxfp8_e4m3", mx_activations="mxfp8_e4m3",
                            activation_dtype="float32"))
    model = Transformer(ModelConfig.for_run(c, 257))
    params = tiny_model({})[1]  # MX changes the matmuls, not the parameters
    with pytest.warns(UserWarning, match="float32 master weights"):
        export.write_model_dir(str(tmp_path / "hf"), params, model.cfg, ByteTokenizer())


@pytest.mark.slow
def test_export_cli_on_a_trained_run(tiny_config, tmp_path, capsys):
    workdir, out = str(tmp_path / "run"), str(tmp_path / "hf")
    train.run(tiny_config, workdir)
    assert export.main([f"--workdir={workdir}", f"--hf_dir={out}", "--step=10"]) == 0
    assert '"step": 10' in capsys.readouterr().out
    assert export.main([f"--workdir={workdir}", f"--hf_dir={out}"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert export.main([f"--workdir={workdir}", f"--hf_dir={out}", "--overwrite"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["hf", "run"]  # no temporary directory left

    trained = sample.load(workdir)
    check_tokenizer(trained.tokenizer, out)
    ids = [trained.tokenizer.eos_id, *trained.tokenizer.encode_batch(["T"])[0]]  # EOS, prompt
    ours = np.asarray(trained.model.apply({"params": trained.params}, np.asarray([ids])))
    hf_model, theirs = hf_logits(out, [ids])
    assert np.abs(ours - theirs).max() <= TOLERANCE * np.abs(ours).max()
    text = sample.sample(trained, "T", tokens=GREEDY_TOKENS)[0]  # 32 positions: all trained
    with torch.no_grad():
        new = hf_model.generate(torch.tensor([ids]), do_sample=False,
                                max_new_tokens=GREEDY_TOKENS).numpy()[0, len(ids):]
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok.decode(until_eos(new, trained.tokenizer.eos_id)).split("<|endoftext|>")[0] == text


def test_export_cli_refusals(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("user data")
    assert export.main([f"--workdir={tmp_path}", f"--hf_dir={tmp_path / 'taken'}"]) == 2
    assert "exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert (tmp_path / "taken" / "mine.txt").read_text() == "user data"
    assert export.main([f"--workdir={tmp_path / 'none'}", f"--hf_dir={tmp_path / 'new'}"]) == 2
    assert "has no config.json" in capsys.readouterr().err
