"""lm.compile for GPU nodes on this CPU machine (lm/compile/gpus.py, the `cuda` extra): the real
train step compiled for 8 compile-only H100s with cuDNN fused attention, bf16 and FSDP; without
the plugin, one message that says what to install (issue 32)."""
import importlib.util
import sys

import pytest

from configs import base
from lm.compile.gpus import GPUS, is_gpu_topology
from lm.compile.program import compile_train_step, report, topology_devices
from lm.errors import ConfigError

needs_plugin = pytest.mark.skipif(
    importlib.util.find_spec("jax_cuda12_plugin") is None,
    reason="the cuda extra (jax's CUDA plugin) compiles GPU programs; not installed here")


def fsdp_config(size: str, batch: int, seq_len: int):
    """`size` at `seq_len` tokens, batch `batch`, fsdp over every GPU, "auto" settings."""
    c = base.get_config(size)
    c.model.max_seq_len = max(seq_len, c.model.max_seq_len)
    c.data.seq_len = seq_len
    c.train.batch_size = batch
    c.mesh.update(dict(data=1, fsdp=-1, tensor=1))
    return c


def test_gpu_topologies_are_told_from_tpu_ones():
    assert [is_gpu_topology(n) for n in ("h100:8", "h200:2x8", "a100:1", "v5p:2x2x2",
                                          "v5e:4x4", "x100:8")] == [True, True, True, False,
                                                                     False, False]
    assert set(GPUS) == {"h100", "h200", "a100"}


def test_a_gpu_topology_without_the_plugin_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax_cuda12_plugin", None)  # import fails as if absent
    with pytest.raises(ConfigError, match=r"--topology='h100:8' compiles for NVIDIA GPUs with "
                                          r"jax's CUDA plugin, which is not installed: install "
                                          r"the cuda extra \(pip install -e '.\[cuda\]'"):
        topology_devices("h100:8")


def test_a_node_of_more_than_8_gpus_is_refused():
    with pytest.raises(ConfigError, match=r"a node holds 1 to 8 GPUs; give e.g. h100:8 or "
                                          r"h100:2x8"):
        topology_devices("h100:16")


@needs_plugin
def test_a_small_model_compiles_for_an_h100_node_with_cudnn_attention():
    devices = topology_devices("h100:8")
    assert [d.device_kind for d in devices] == ["NVIDIA H100 80GB HBM3"] * 8
    config = fsdp_config("d128_l4", 16, 256)
    compiled, facts = compile_train_step(config, devices)
    record = report(compiled, facts, config, devices)
    assert (record["chip"], record["mesh"]) == ("H100", "data=1,fsdp=8,tensor=1")
    assert (record["attention"], record["dtype"]) == ("cudnn", "bfloat16")
    assert record["fits"] and "__cudnn$fmhaSoftmax" in record["custom_calls"]
    assert "__cudnn$fmhaSoftmaxBackward" in record["custom_calls"]
    assert record["xla_estimated_step_s"] is None and record["roofline_step_s"] > 0


@needs_plugin
@pytest.mark.slow
def test_the_1b_model_fits_an_h100_node_with_cudnn_attention():
    devices = topology_devices("h100:8")
    config = fsdp_config("d2048_l20", 32, 2048)
    compiled, facts = compile_train_step(config, devices)
    record = report(compiled, facts, config, devices)
    assert 1.0e9 < record["params"] < 1.01e9
    assert record["fits"] and record["total_bytes"] < 0.5 * record["hbm_bytes"]
    assert "__cudnn$fmhaSoftmax" in record["custom_calls"]
    gathered = {c["dtype"]: c["bytes"] for c in record["collectives"]
                if c["kind"] == "all-gather"}
    assert gathered["bf16"] > 0.99 * sum(gathered.values())  # weights cast before gathering
