"""Checks that need several devices: `python tests/train/multidevice.py CHECK [ARGS]`, run by
tests/train/test_sharding.py in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8.
Each check prints one line "RESULT <json>" for the test to assert on.
"""
import json
import shutil
import sys

import jax
import numpy as np

from configs import base
from lm import sample, train
from lm.model import ModelConfig
from lm.train import runtime, sharding
from lm.train.metrics_log import read_metrics

MESHES = {"one_device": dict(data=1, fsdp=1, tensor=1),
          "fsdp8": dict(data=1, fsdp=8, tensor=1),
          "data2_fsdp2_tensor2": dict(data=2, fsdp=2, tensor=2)}
VOCAB, SEQ_LEN, BATCH = 128, 16, 16


def small_config(optimizer: str, d_model: int = 32):
    """A model whose every sharded dim divides 8, trained by `optimizer`."""
    c = base.get_config()
    c.model.update(dict(d_model=d_model, n_layers=2, n_heads=4, d_ff=d_model, max_seq_len=64,
                        vocab_size=VOCAB))
    c.optimizer.name = optimizer
    c.optimizer.soap.precondition_frequency = 2
    c.optimizer.shampoo.precondition_frequency = 2
    c.optimizer.dion.rank_fraction = 0.5  # a low-rank (side, r) Q
    c.schedule.warmup_steps = 1
    c.train.update(dict(batch_size=BATCH, microbatches=2, steps=4))
    return c


def build(config, mesh: dict):
    config.mesh.update(mesh)
    devices = jax.devices()[:int(np.prod(list(mesh.values())))]
    sharder = sharding.from_config(config, devices)
    rt = runtime.build(ModelConfig.for_run(config, VOCAB), runtime.build_optimizer(config).tx,
                       sharder, seed=0, seq_len=SEQ_LEN, microbatches=config.train.microbatches)
    return rt, rt.init_state()


def batches(steps: int):
    rng = np.random.default_rng(0)
    return [rng.integers(0, VOCAB, (BATCH, SEQ_LEN + 1)).astype(np.int32) for _ in range(steps)]


def equivalence(optimizer: str, steps: str):
    """Losses and final parameters of `steps` train steps on each mesh, and, as a yardstick of
    float32 round-off, on one device with the gradient summed in another order (one
    microbatch instead of two)."""
    out = {}
    runs = {**MESHES, "one_device_reordered": MESHES["one_device"]}
    for name, mesh in runs.items():
        config = small_config(optimizer)
        # Matrix methods amplify round-off where the statistics are near-singular (Shampoo's
        # inverse 4th root) or Adam's denominator is tiny (SOAP's rotated moments): milder
        # damping keeps the comparison about sharding, not conditioning.
        config.optimizer.soap.update(dict(max_precond_dim=64, eps=1e-5))
        config.optimizer.shampoo.matrix_eps = 1e-3
        if name == "one_device_reordered":
            config.train.microbatches = 1
        rt, state = build(config, mesh)
        losses = []
        for windows in batches(int(steps)):
            state, metrics, _ = rt.train_step(state, jax.device_put(windows, rt.sharder.batch))
            losses.append(float(metrics["train/loss"]))
        params = jax.device_get(state.params)
        out[name] = {"losses": losses, "params": {
            jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(x).ravel().tolist()
            for p, x in jax.tree_util.tree_leaves_with_path(params)}}
    return out


def placement(optimizer: str, mesh_name: str):
    """Every state leaf's PartitionSpec, and per-device bytes, for a d_model=256 model."""
    rt, state = build(small_config(optimizer, d_model=256), MESHES[mesh_name])
    specs = {jax.tree_util.keystr(p, simple=True, separator="/"): [
        list(e) if isinstance(e, tuple) else e for e in x.sharding.spec]
        for p, x in jax.tree_util.tree_leaves_with_path(state)}
    return {"specs": specs, "params": runtime.per_device_bytes(state.params),
            "opt_state": runtime.per_device_bytes(state.opt_state)}


def run_config(data_root: str, steps: int, mesh: dict):
    """A tiny byte-level run on the committed sample corpus, checkpointing every 4 steps."""
    c = base.get_config()
    c.model.update(dict(d_model=32, n_layers=2, n_heads=2, max_seq_len=64))
    c.data.update(dict(root=data_root, corpus="en_docs_sample", eval_corpora=("code_py_sample",),
                       seq_len=32, eval_batches=1, eval_batch_size=8))
    c.train.update(dict(steps=steps, batch_size=16, log_every=1, eval_every=4,
                        checkpoint_every=4, layer_stats_every=0))
    c.schedule.warmup_steps = 2
    c.mesh.update(mesh)
    return c


def losses(workdir: str) -> dict:
    return {r["step"]: r["train/loss"] for r in read_metrics(workdir)}


def resume_across_meshes(data_root: str, out: str):
    """8 steps on fsdp=8, checkpointed at steps 4 and 8; then two copies of that run without
    the step-8 checkpoint: one resumed from step 4 onto data=2,fsdp=4 here, one left in
    OUT/to_one_device for resume_on_one_device. Also a greedy sample of the step-4 checkpoint,
    which lm.sample restores onto one of the 8 devices."""
    train.run(run_config(data_root, 8, dict(data=1, fsdp=8, tensor=1)), f"{out}/straight")
    sampled = greedy_sample(f"{out}/straight")
    for copy in ("resumed", "to_one_device"):
        shutil.copytree(f"{out}/straight", f"{out}/{copy}")
        shutil.rmtree(f"{out}/{copy}/checkpoints/8")
    train.run(run_config(data_root, 8, dict(data=2, fsdp=4, tensor=1)), f"{out}/resumed")
    return {"straight": losses(f"{out}/straight"), "resumed": losses(f"{out}/resumed"),
            "sample": sampled}


def resume_on_one_device(data_root: str, workdir: str):
    """Samples from, then continues, a run saved on 8 devices to step 8 on this process's
    single device."""
    sampled = greedy_sample(workdir)
    train.run(run_config(data_root, 8, dict(data=-1, fsdp=1, tensor=1)), workdir)
    return {**losses(workdir), "sample": sampled}


def greedy_sample(workdir: str) -> str:
    """lm.sample's greedy continuation of a prompt from the checkpoint at step 4."""
    [text] = sample.sample(sample.load(workdir, step=4), "The ", tokens=12)
    return text


if __name__ == "__main__":
    check, *args = sys.argv[1:]
    if check != "resume_on_one_device":
        assert jax.device_count() == 8, jax.devices()
    print("RESULT " + json.dumps(globals()[check](*args)), flush=True)
