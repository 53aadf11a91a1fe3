"""Sharding: mesh and rule checks (in process), and on 8 fake CPU devices (subprocesses running
tests/train/multidevice.py): sharded training equals one device, state is placed as the rules say,
checkpoints move between meshes, and a two-process run equals a one-process run."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from configs import base
from lm.model import ModelConfig, Transformer, init_params, param_logical_axes
from lm.train import sharding
from lm.train.config_checks import ConfigError
from lm.train.metrics_log import read_metrics
from tests import REPO

EIGHT_DEVICES = "--xla_force_host_platform_device_count=8"


def run_check(*args, devices: int = 8) -> dict:
    """Runs `tests/train/multidevice.py ARGS` on `devices` fake CPU devices; its RESULT json."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO),
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "train", "multidevice.py"),
                           *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.split("RESULT ", 1)[1])


# ---------------------------------------------------------------- config checks (one device)

def mesh_cfg(**sizes):
    cfg = base.get_config().mesh
    cfg.update(sizes)
    return cfg


def test_mesh_shape_fills_the_minus_one_axis_and_checks_the_product():
    assert sharding.mesh_shape(mesh_cfg(), 8) == {"data": 8, "fsdp": 1, "tensor": 1}
    assert sharding.mesh_shape(mesh_cfg(data=2, fsdp=-1, tensor=2), 8) == {
        "data": 2, "fsdp": 2, "tensor": 2}
    with pytest.raises(ConfigError, match=r"has 6 devices but 8 are visible.*-1"):
        sharding.mesh_shape(mesh_cfg(data=2, fsdp=3, tensor=1), 8)
    with pytest.raises(ConfigError, match="does not divide the device count"):
        sharding.mesh_shape(mesh_cfg(data=-1, tensor=3), 8)
    with pytest.raises(ConfigError, match="at most one may be -1"):
        sharding.mesh_shape(mesh_cfg(data=-1, fsdp=-1), 8)
    with pytest.raises(ConfigError, match="mesh.tensor=0"):
        sharding.mesh_shape(mesh_cfg(tensor=0), 8)


def test_rules_name_known_axes_only():
    rules = dict(sharding.axis_rules(base.get_config().mesh.rules))
    assert rules["batch"] == ("data", "fsdp") and rules["embed"] == "fsdp"
    assert rules["seq"] is None and rules["heads"] == "tensor"
    bad = base.get_config().mesh.rules
    bad.embed = "fsdp,model"
    with pytest.raises(ConfigError, match=r"mesh.rules.embed='fsdp,model' names \['model'\]"):
        sharding.axis_rules(bad)


def model_parts(**model):
    c = base.get_config()
    c.model.update(model)
    cfg = ModelConfig.from_config(c.model, 256, "float32")
    transformer = Transformer(cfg)
    shapes = jax.eval_shape(lambda: init_params(transformer, jax.random.PRNGKey(0), 8))
    return cfg, param_logical_axes(transformer), shapes, sharding.axis_rules(c.mesh.rules)


def test_a_mesh_that_does_not_divide_the_heads_is_refused_with_the_fix():
    # tensor=3 on 6 devices, 8 heads of 16 dims: the attention kernels (128 columns), the 8
    # heads and the MLP (512) do not split in 3.
    cfg, logical, shapes, rules = model_parts(d_model=128, n_heads=8)
    sizes = sharding.mesh_shape(mesh_cfg(data=2, tensor=3), 6)
    with pytest.raises(ConfigError) as err:
        sharding.check_model(cfg, logical, shapes, rules, sizes)
    message = str(err.value)
    assert "parameter block_0/attn/query/kernel dim 1 (heads, size 128) over mesh axes tensor" \
           in message
    assert "activation attention heads (model.n_heads) dim 0 (heads, size 8)" in message
    assert "block_0/mlp/up/kernel dim 1 (mlp, size 512)" in message
    assert "--config.mesh.rules.heads=''" in message
    sharding.check_model(cfg, logical, shapes, rules, {"data": 3, "fsdp": 1, "tensor": 2})


def test_every_parameter_has_logical_axes_and_fsdp_splits_the_model_dim():
    cfg, logical, shapes, rules = model_parts(activation="swiglu", qk_norm=True,
                                              tie_embeddings=False)
    names = jax.tree_util.tree_leaves(logical, is_leaf=lambda x: isinstance(x, PartitionSpec))
    assert len(names) == len(jax.tree_util.tree_leaves(shapes))
    assert all(len(spec) == len(shape.shape) and all(spec)
               for spec, shape in zip(names, jax.tree_util.tree_leaves(shapes)))
    assert logical["block_0"]["mlp"]["gate"]["kernel"] == PartitionSpec("embed", "mlp")
    assert logical["unembed"]["kernel"] == PartitionSpec("embed", "vocab")
    assert logical["block_0"]["attn"]["query_norm"]["scale"] == PartitionSpec("head_dim")


def test_batches_must_split_over_the_batch_shards():
    c = base.get_config()
    c.train.update(dict(batch_size=12, microbatches=1))
    rules = sharding.axis_rules(c.mesh.rules)
    with pytest.raises(ConfigError, match="12 sequences.*does not split over the 8 batch shards"):
        sharding.check_batches(c, rules, {"data": 2, "fsdp": 4, "tensor": 1}, 1)
    sharding.check_batches(c, rules, {"data": 1, "fsdp": 2, "tensor": 4}, 1)  # 2 batch shards
    c.data.eval_batch_size = 6
    with pytest.raises(ConfigError, match="eval_batch_size=6 does not split over 4 processes"):
        sharding.check_batches(c, rules, {"data": 1, "fsdp": 1, "tensor": 1}, 4)


# ------------------------------------------------------------- 8 fake devices (subprocesses)

def max_param_diff(run: dict, reference: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(run["params"][k]) - reference["params"][k])))
               for k in reference["params"])


# Bounds on the largest parameter difference from one device after 4 steps (float32, weights
# of order 1). Sophia samples labels from the model's own logits, and a label whose uniform
# draw sits on a round-off boundary of the softmax may flip.
PARAM_ATOL = {"adamw": 1e-6, "muon": 1e-6, "shampoo": 1e-6, "sophia": 3e-5}


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "soap", "shampoo", "muon", "sophia"])
def test_sharded_training_equals_one_device(optimizer):
    result = run_check("equivalence", optimizer, 4)
    one = result["one_device"]
    for mesh in ("fsdp8", "data2_fsdp2_tensor2"):
        np.testing.assert_allclose(result[mesh]["losses"], one["losses"], rtol=1e-5)
        diff = max_param_diff(result[mesh], one)
        if optimizer == "soap":
            # SOAP's Adam step in a rotated basis turns round-off in near-zero rotated
            # gradient entries into O(lr) noise: on one device, merely summing the gradient in
            # another order moves the parameters by as much. The sharded runs stay within a
            # few times that yardstick.
            yardstick = max_param_diff(result["one_device_reordered"], one)
            assert 0 < yardstick < 1e-3
            assert diff < 5 * yardstick, (mesh, diff, yardstick)
        else:
            assert diff < PARAM_ATOL[optimizer], (mesh, diff)


def spec(entries):
    return [list(e) if isinstance(e, tuple) else e for e in entries]


@pytest.mark.parametrize("optimizer", [pytest.param("adamw", marks=pytest.mark.slow), "soap",
                                       pytest.param("shampoo", marks=pytest.mark.slow),
                                       pytest.param("dion", marks=pytest.mark.slow)])
def test_state_is_sharded_as_the_rules_say(optimizer):
    result = run_check("placement", optimizer, "fsdp8")
    specs = result["specs"]
    expected_params = {
        "embedding": ["tensor", "fsdp"], "block_0/attn/query/kernel": ["fsdp", "tensor"],
        "block_0/attn/key/kernel": ["fsdp", "tensor"],
        "block_0/attn/out/kernel": ["tensor", "fsdp"],
        "block_1/mlp/up/kernel": ["fsdp", "tensor"],
        "block_1/mlp/down/kernel": ["tensor", "fsdp"],
        "final_norm/scale": [None], "block_0/attn_norm/scale": [None]}
    for name, expected in expected_params.items():
        assert specs[f"params/{name}"] == expected, name
        # every optimizer-state leaf shaped like the parameter is sharded like it
        moments = [k for k in specs if k.startswith("opt_state/") and k.endswith("/" + name)]
        assert moments and all(specs[k] == expected for k in moments), (name, moments)
    factors = {k: v for k, v in specs.items() if "/gg/" in k or "/q/" in k or "/stats/" in k
               or "/roots/" in k}
    if optimizer == "adamw":
        assert not factors
    elif optimizer == "dion":  # one low-rank Q, (256, 128), on axis 0 of these square kernels
        for name, axes in (("block_0/attn/query/kernel", ["fsdp", "tensor"]),
                           ("block_0/attn/out/kernel", ["tensor", "fsdp"])):
            rows = [v for k, v in factors.items() if k.endswith(f"{name}/0")]
            assert rows == [[axes, None]], (name, rows)
    else:  # factor rows are split over the parameter's mesh axes (its own axis's first)
        lead = [None] if optimizer == "soap" else []  # SOAP stacks blocks: (blocks, d, d)
        index = "0/" if optimizer == "soap" else ""   # SOAP: region 0 (the only one), then dim
        for name, dim in (("block_0/attn/query/kernel", 0), ("block_0/attn/out/kernel", 1)):
            rows = [v for k, v in factors.items() if k.endswith(f"{name}/{index}{dim}")]
            assert len(rows) == 2 and all(r == lead + [["fsdp", "tensor"], None]
                                          for r in rows), (name, rows)
    # per device: 1/8 of the total, up to the replicated norm scales and step counts
    for part in ("params", "opt_state"):
        fraction = result[part]["max_device_bytes"] / result[part]["total_bytes"]
        assert 1 / 8 <= fraction < 1.03 / 8, (part, result[part])


@pytest.mark.slow
def test_checkpoint_saved_on_one_mesh_resumes_on_another(tmp_path, data_root):
    result = run_check("resume_across_meshes", data_root, tmp_path)
    straight = result["straight"]
    resumed = result["resumed"]
    assert sorted(map(int, resumed)) == list(range(1, 9))  # one row per step, no repeats
    assert [resumed[str(s)] for s in range(1, 5)] == [straight[str(s)] for s in range(1, 5)]
    np.testing.assert_allclose([resumed[str(s)] for s in range(5, 9)],
                               [straight[str(s)] for s in range(5, 9)], rtol=1e-5)
    one = run_check("resume_on_one_device", data_root, tmp_path / "to_one_device", devices=1)
    np.testing.assert_allclose([one[str(s)] for s in range(5, 9)],
                               [straight[str(s)] for s in range(5, 9)], rtol=1e-5)
    assert one["sample"] == result["sample"]  # lm.sample reads an fsdp=8 checkpoint anywhere


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path, data_root):
    """Two processes of 4 CPU devices each (jax.distributed, gloo), each reading half of every
    batch, train exactly like one process of 8 devices; only process 0 writes metrics."""
    overrides = ["--config=configs/base.py", "--config.model.d_model=32",
                 "--config.model.n_layers=2", "--config.model.n_heads=2",
                 f"--config.data.root={data_root}", "--config.data.corpus=en_docs_sample",
                 "--config.data.eval_corpora=('code_py_sample',)", "--config.data.seq_len=32",
                 "--config.data.eval_batches=1", "--config.data.eval_batch_size=8",
                 "--config.train.steps=6", "--config.train.batch_size=16",
                 "--config.train.log_every=1", "--config.train.eval_every=3",
                 "--config.train.checkpoint_every=3", "--config.schedule.warmup_steps=2",
                 "--config.mesh.data=2", "--config.mesh.fsdp=-1"]
    base_env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}

    def launch(workdir, devices, extra_env):
        env = {**base_env, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
               **extra_env}
        return subprocess.Popen([sys.executable, "-m", "lm.train", f"--workdir={workdir}",
                                 *overrides], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    single = launch(tmp_path / "one", 8, {})
    assert single.wait(timeout=600) == 0, single.stdout.read()[-3000:]
    address = f"localhost:{free_port()}"
    procs = [launch(tmp_path / "two", 4, {"JAX_COORDINATOR_ADDRESS": address,
                                          "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)})
             for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "done: 6 steps" in outputs[0] and "done:" not in outputs[1]
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["step"] for r in two] == list(range(1, 7))
    for a, b in zip(one, two):
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-5)
    assert two[-1]["eval/code_py_sample/loss"] == pytest.approx(
        one[-1]["eval/code_py_sample/loss"], rel=1e-5)
    assert sorted(os.listdir(tmp_path / "two" / "checkpoints")) == ["3", "6"]
