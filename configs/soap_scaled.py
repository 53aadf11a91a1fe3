"""SOAP for large runs: blocked factors, batched block updates, cheaper rotations.

    python -m lm.train --config=configs/soap_scaled.py:d2048_l20 --workdir=runs/soap_1b
    python -m benchmarks.accelerator   # measures this preset's step against AdamW's at 1B

At 1B (d_model 2048, d_ff 8192) the reference settings (max_precond_dim 10000, no blocks) keep
8192 x 8192 factors whose rotations cost mn(m + n) per matrix every step, several times the
model's own matmuls at small batches. Blocks of 512 (levanter uses 256-512) bound each rotation
at mn * 1024; their eigenbases update together on GPU/TPU (block_update auto: vmap); the
rotations run at "high" precision (bf16_3x on TPU: half the passes of "highest"). The step-time
ratio to AdamW is a measurement: README.md gives it per chip (benchmarks/accelerator.py).
"""
from configs import base


def get_config(size: str = "d2048_l20"):
    c = base.get_config(size)
    c.optimizer.name = "soap"
    c.optimizer.lr = 3e-3
    c.optimizer.soap.update(dict(block_size=512, precondition_frequency=10, precision="high",
                                 block_update="auto"))
    return c
