"""Three tiny runs (seconds each) on the embedded sample corpora: an lr grid of AdamW, the sweep
CI runs end to end.

    python -m lm.sweep --sweep=configs/sweeps/tiny.py --runs_dir=runs/sweeps/tiny
"""
from configs import base
from lm.sweep.spec import Sweep, lr_grid


def tiny_config():
    """A 2-layer, 32-wide model on 8 x 32 tokens per step: 16 steps take a few seconds."""
    c = base.get_config()
    c.model.update(dict(d_model=32, n_layers=2, n_heads=2, max_seq_len=64))
    c.data.update(dict(corpus="en_docs_sample", eval_corpora=("en_docs_sample", "code_py_sample"),
                       seq_len=32, eval_batches=2, eval_batch_size=8))
    c.train.update(dict(steps=16, batch_size=8, eval_every=8, checkpoint_every=8, log_every=4,
                        layer_stats_every=0))
    c.schedule.warmup_steps = 4
    return c


def get_sweep():
    return Sweep(tiny_config(), lr_grid({"adamw": [1e-2, 3e-2, 1e-1]}))
