"""Data parallelism over 8 fake CPU devices gives the same training as one device."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import json, sys
import jax
from configs import base
from lm import train
from lm.metrics_log import read_metrics
assert jax.device_count() == 8, jax.devices()
root, out = sys.argv[1], sys.argv[2]
losses = {}
for devices in (1, 8):
    c = base.get_config()
    c.model.update(dict(d_model=32, n_layers=2, n_heads=2, max_seq_len=64))
    c.data.update(dict(root=root, corpus="en_docs_sample", eval_corpora=("code_py_sample",),
                       seq_len=32, eval_batches=1, eval_batch_size=8))
    c.train.update(dict(steps=6, batch_size=16, log_every=1, eval_every=6))
    c.schedule.warmup_steps = 2
    c.mesh.data = devices
    train.run(c, f"{out}/mesh{devices}")
    rows = read_metrics(f"{out}/mesh{devices}")
    losses[devices] = [(r["train/loss"], r["train/grad_norm"]) for r in rows]
    losses[f"eval{devices}"] = rows[-1]["eval/code_py_sample/loss"]
print("RESULT" + json.dumps(losses))
"""


@pytest.mark.slow
def test_eight_device_data_parallel_matches_one_device(tmp_path, data_root):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, data_root, str(tmp_path)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    one, eight = result["1"], result["8"]
    assert len(one) == len(eight) == 6
    for (loss1, grad1), (loss8, grad8) in zip(one, eight):
        assert loss8 == pytest.approx(loss1, rel=1e-4)
        assert grad8 == pytest.approx(grad1, rel=1e-3)
    assert result["eval8"] == pytest.approx(result["eval1"], rel=1e-4)
