"""train.init_from=hf:DIR: a transformers model starts a run (on an 8-device fsdp mesh too),
its step-0 parameters export back to the same tensors bit for bit, and a config that differs
from the run's model is refused naming the field, both values and the override."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import base
from lm.errors import ConfigError
from lm.hf import load, weights
from lm.hf.architectures import architecture_of
from lm.model import ModelConfig
from tests import REPO
from tests.hf.import_check import MODEL
from tests.hf.test_export import VARIANTS, tiny_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture
def tiny_llama(tmp_path):
    """A Llama that transformers builds and saves, the shape of import_check.MODEL."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
        rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=256, eos_token_id=256)
    path = str(tmp_path / "llama")
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    return path


def run_config(hf_dir, **model):
    c = base.get_config()
    c.model.update({**MODEL, **model})
    c.train.init_from = f"hf:{hf_dir}"
    return c


@pytest.mark.parametrize("variant", ["default_rmsnorm_gelu", "swiglu_qk_norm_gqa",
                                     "layernorm_gelu", "untied_scanned"])
def test_tensors_round_trip_bit_exactly(variant):
    model, params = tiny_model(*VARIANTS[variant][:2])
    arch = architecture_of(model.cfg)
    tensors = weights.to_hf(params, model.cfg, arch)
    back = weights.from_hf(tensors, model.cfg, arch)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(params)
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, np.asarray(b))
    again = weights.to_hf(back, model.cfg, arch)
    assert all(np.array_equal(again[k], tensors[k]) for k in tensors)


@pytest.mark.parametrize("model, message", [
    (dict(activation="gelu"), ("model.activation: the run has gelu, LlamaForCausalLM has "
                               "swiglu (--config.model.activation=swiglu)")),
    (dict(d_ff=128), ("model.d_ff: the run has 128, LlamaForCausalLM has 64 "
                      "(--config.model.d_ff=64)")),
    (dict(rope_base=500.0), "--config.model.rope_base=10000.0"),
    (dict(vocab_size=300), "model.vocab_size: the run has 300, LlamaForCausalLM has 257"),
    (dict(tie_embeddings=True), "--config.model.tie_embeddings=False"),
    (dict(mup_base_width=16), "set model.mup_base_width=0"),
])
def test_mismatched_config_is_refused_with_the_override(tiny_llama, model, message):
    c = run_config(tiny_llama, **model)
    with pytest.raises(ConfigError) as err:
        load.check(c, ModelConfig.for_run(c, 257))
    assert message in str(err.value)


def test_bad_init_from_is_refused(tiny_llama, tmp_path):
    c = run_config(tiny_llama)
    cfg = ModelConfig.for_run(c, 257)
    for init_from, message in ((str(tmp_path), "give hf:DIR"),
                               (f"hf:{tmp_path}/none", "has no config.json")):
        c.train.init_from = init_from
        with pytest.raises(ConfigError, match=message):
            load.check(c, cfg)
    c.train.update(dict(init_from=f"hf:{tiny_llama}", branch_from=str(tmp_path)))
    with pytest.raises(ConfigError, match="set only one"):
        load.check(c, cfg)
    with open(os.path.join(tiny_llama, "config.json")) as f:
        hf_config = json.load(f)
    hf_config["rms_norm_eps"] = 1e-5
    with open(os.path.join(tiny_llama, "config.json"), "w") as f:
        json.dump(hf_config, f)
    c.train.branch_from = ""
    with pytest.raises(ConfigError, match="rms_norm_eps=1e-05 .optiscale computes 1e-06"):
        load.check(c, cfg)


@pytest.mark.slow
def test_import_train_export_on_an_fsdp8_mesh(tiny_llama, data_root, tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tests", "hf", "import_check.py"), tiny_llama,
         str(tmp_path / "runs"), data_root, "8"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    print(result)
    assert result["devices"] == 8 and result["step"] == 20
    assert result["round_trip"]  # step 0: hf -> optiscale (sharded) -> hf, bit for bit
    assert "P('fsdp', 'tensor')" in result["shardings"]  # the parameters were split over fsdp
    assert result["logit_diff"] <= 1e-5 * result["logit_scale"]


def test_missing_transformers_names_the_extra(monkeypatch):
    from lm import hf
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[hf\]'"):
        hf.require("transformers")
