"""Shared fixtures: a tiny training config on the committed sample corpora. The tests run on
the CPU platform: with the tpu extra installed, libtpu would otherwise look for TPU chips in
every process (lm.compile's compile-only TPU devices need no TPU backend)."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from configs import base  # noqa: E402


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """One prepared-data root for the whole session (sample corpora need no network)."""
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture
def tiny_config(data_root):
    c = base.get_config()
    c.model.update(dict(d_model=32, n_layers=2, n_heads=2, max_seq_len=64))
    c.data.update(dict(root=data_root, corpus="en_docs_sample",
                       eval_corpora=("en_docs_sample", "code_py_sample"),
                       seq_len=32, eval_batches=2, eval_batch_size=8))
    c.train.update(dict(steps=20, batch_size=8, eval_every=10, checkpoint_every=10,
                        log_every=5, keep_checkpoints=3))
    c.schedule.warmup_steps = 5
    return c


@pytest.fixture
def short_config(tiny_config):
    """tiny_config cut to 10 steps: metrics rows and checkpoints at steps 5 and 10, one
    evaluation at the end (the runs of the tests that damage or interrupt a run)."""
    tiny_config.train.update(dict(steps=10, eval_every=10, checkpoint_every=5, log_every=5))
    tiny_config.schedule.warmup_steps = 2
    return tiny_config
