"""lm.compile: the 1B ladder size's real train step compiled ahead of time for a TPU v5p slice on
this CPU machine (libtpu, the `tpu` extra): it fits in HBM with splash attention, scanned or
not; its FSDP weight all-gathers move bf16; a model that cannot fit is reported, not crashed."""
import json
import subprocess
import sys

import pytest

from configs import base

pytest.importorskip("libtpu", reason="the tpu extra (libtpu) compiles TPU programs")

from lm.compile.program import collectives, compile_train_step, report, topology_devices  # noqa
from tests import REPO



def one_b(**model):
    """d2048_l20, bf16 (auto on TPU), fsdp over all chips, 32 x 2048 tokens per step."""
    c = base.get_config("d2048_l20")
    c.model.update(dict(max_seq_len=2048, **model))
    c.data.seq_len = 2048
    c.train.batch_size = 32
    c.mesh.update(dict(data=1, fsdp=-1, tensor=1))
    return c


@pytest.mark.slow
@pytest.mark.parametrize("scan_layers", [True, False])
def test_the_1b_model_fits_a_v5p_slice_with_splash_attention(scan_layers):
    devices = topology_devices("v5p:2x2x2")
    config = one_b(scan_layers=scan_layers)
    compiled, facts = compile_train_step(config, devices)
    record = report(compiled, facts, config, devices)
    assert (record["chips"], record["chip"], record["mesh"]) == (8, "TPU v5p",
                                                                 "data=1,fsdp=8,tensor=1")
    assert (record["attention"], record["dtype"]) == ("splash", "bfloat16")
    assert record["fits"] and record["total_bytes"] < record["hbm_bytes"]
    assert 1.0e9 < record["params"] < 1.01e9
    # AdamW's two float32 moments, sharded over the 8 chips (norm scales replicated: ~0.1%).
    assert record["optimizer"] == "adamw"
    assert 1.0 <= record["optimizer_state_bytes"] / (2 * 4 * record["params"] / 8) < 1.01
    gathers = [c for c in record["collectives"] if c["kind"] == "all-gather"]
    assert gathers and {c["dtype"] for c in gathers} == {"bf16"}  # cast before gathering
    if not scan_layers:
        assert 0.2 < record["estimated_mfu"] < 1.0


@pytest.mark.slow
def test_a_model_that_cannot_fit_is_reported_with_its_numbers():
    flags = ["--config=configs/base.py:d2048_l20", "--topology=v5p:2x2x2",
             "--config.mesh.data=1", "--config.mesh.fsdp=-1", "--config.data.seq_len=2048",
             "--config.model.max_seq_len=2048", "--config.model.scan_layers=True",
             "--config.precision.activation_dtype=float32", "--config.train.batch_size=512"]
    done = subprocess.run([sys.executable, "-m", "lm.compile", *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-2000:]
    record = json.loads(done.stdout)
    assert not record["fits"] and record["temporaries_bytes"] > record["hbm_bytes"] > 9e10
    assert record["verdict"].startswith("does not fit: ")


@pytest.mark.parametrize("flag, message", [
    ("--topology=v5p-128", "--topology='v5p-128'"),
    # an override of the default config (no --config given)
    ("--config.model.n_layer=4", "config.model has no field 'n_layer'. Did you mean n_layers"),
])
def test_bad_input_is_a_clear_error(flag, message):
    done = subprocess.run([sys.executable, "-m", "lm.compile", flag], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_an_unregistered_optimizer_is_refused_before_any_compile(capsys):
    from benchmarks import tpu_compile
    assert tpu_compile.main(["--optimizers=adamw,adamw_typo/b1=0.9"]) == 2
    err = capsys.readouterr().err
    assert "'adamw_typo/b1=0.9' names no registered optimizer" in err and "nadamw" in err


def test_collectives_are_counted_by_kind_and_dtype_with_their_bytes():
    hlo = "\n".join([
        "%ag = bf16[8,1024]{1,0} all-gather(bf16[1,1024]{1,0} %p), dimensions={0}",
        "%ags = (f32[2,4]{1,0}, f32[16,4]{1,0}, u32[]{:S(2)}, u32[]{:S(2)}) "
        "all-gather-start(f32[2,4]{1,0} %q)",
        "%ar = (f32[], f32[2048]{0}) all-reduce(f32[] %a, f32[2048]{0} %b), to_apply=%add",
        "%rs = f32[128]{0} reduce-scatter(f32[1024]{0} %g), dimensions={0}"])
    assert collectives(hlo) == [
        {"kind": "all-gather", "dtype": "bf16", "count": 1, "bytes": 8 * 1024 * 2},
        {"kind": "all-gather", "dtype": "f32", "count": 1, "bytes": 16 * 4 * 4},
        {"kind": "all-reduce", "dtype": "f32", "count": 1, "bytes": 4 + 2048 * 4},
        {"kind": "reduce-scatter", "dtype": "f32", "count": 1, "bytes": 128 * 4}]


def test_meshes_that_split_a_physical_axis_are_laid_out():
    """(2, 16, 2) on a v5p 4x4x4 splits a physical axis of 4: jax.make_mesh refuses it."""
    import ml_collections

    from lm.train import sharding
    devices = topology_devices("v5p:4x4x4")
    mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=2, fsdp=16, tensor=2)),
                              devices)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 16, "tensor": 2}
    assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in devices)


@pytest.mark.slow
def test_a_multi_slice_run_spans_the_slices_with_its_data_axis():
    """Two v5p 2x2x2 slices, mesh.slices=2: the data axis crosses the data-center network, the
    fsdp axis stays inside each slice; the train step compiles."""
    from jax.experimental import topologies
    devices = list(topologies.get_topology_desc(platform="tpu", topology_name="v5p:2x2x2",
                                                num_slices=2).devices)
    config = base.get_config("d128_l4")
    config.mesh.update(dict(data=2, fsdp=8, tensor=1, slices=2))
    config.train.batch_size = 32
    compiled, facts = compile_train_step(config, devices)
    record = report(compiled, facts, config, devices)
    assert record["fits"] and record["mesh"] == "data=2,fsdp=8,tensor=1"
    from lm.train import sharding
    mesh = sharding.make_mesh(config.mesh, devices)
    assert [{d.slice_index for d in mesh.devices[i].flat} for i in range(2)] == [{0}, {1}]
