"""Quickstart: a 1.3M-parameter LM (0.8M non-embedding) on embedded English prose, on a CPU.

    python -m lm.train --config=configs/quickstart.py --workdir=runs/quickstart

A 4096-token BPE (trained offline on en_docs + code_py) rather than the byte-level default: with
the same model and 1.6M training tokens, BPE ends well below the byte-level model in bits per
byte on en_docs, since a BPE token covers ~3.1 bytes of text. docs/data.md ("Why the quickstart
uses BPE") gives both runs' commands and results with their corpus version; README.md gives this
run's output.
"""
from configs import base


def get_config():
    c = base.get_config("d128_l4")
    c.data.tokenizer = "bpe"
    c.data.vocab_size = 4096
    c.data.seq_len = 128
    c.train.steps = 800
    c.train.batch_size = 16  # 16 x 128 tokens: at 1.6M tokens, more steps beat bigger batches
    c.train.eval_every = 200
    c.train.checkpoint_every = 200
    c.train.log_every = 20
    c.schedule.warmup_steps = 80
    c.optimizer.lr = 5e-3
    return c
