"""Ahead-of-time compilation of a run's train step for TPU topologies, on a CPU machine.

    program.py  topology devices, the compiled train step, its memory / cost / collectives
    chips.py    HBM and bf16 peak per chip (also the GPU benchmark's MFU)
    cli.py      python -m lm.compile --config=... --topology=v5p:4x4x4
"""

DEFAULT_CONFIG = "configs/base.py:d2048_l20"  # the 1B ladder size
