"""Quickstart: a 0.8M-parameter LM on the embedded English-prose corpus, minutes on a CPU.

    python -m lm.train --config=configs/quickstart.py --workdir=runs/quickstart

A 4096-token BPE (trained offline on en_docs + code_py) rather than the byte-level default:
on 2 CPU cores the same time budget reaches about 2.0 bits per byte with BPE against 2.6 with
bytes, because each token then covers ~3.4 bytes of text.
"""
from configs import base


def get_config():
    c = base.get_config("d128_l4")
    c.data.tokenizer = "bpe"
    c.data.vocab_size = 4096
    c.data.seq_len = 128
    c.train.steps = 400
    c.train.batch_size = 32
    c.train.eval_every = 100
    c.train.checkpoint_every = 200
    c.train.log_every = 10
    c.schedule.warmup_steps = 40
    c.optimizer.lr = 5e-3
    return c
