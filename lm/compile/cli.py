"""Compile a run's train step ahead of time for a TPU topology or GPU nodes, and report what they
would run.

    python -m lm.compile --config=configs/base.py:d2048_l20 --topology=v5p:2x2x2 \\
        --config.mesh.data=1 --config.mesh.fsdp=-1 --config.data.seq_len=2048 \\
        --config.model.max_seq_len=2048 --config.train.batch_size=32

Needs the `tpu` extra (libtpu) for a TPU topology, the `cuda` extra (jax's CUDA plugin) for GPU
nodes (--topology=h100:8, h200:8, a100:8, h100:2x8: GPU:[NODESx]GPUS_PER_NODE), and no
accelerator. Prints one JSON object: the mesh, parameters and
settings; the optimizer and the bytes of its state each chip holds; bytes per chip (arguments,
outputs, aliased, temporaries, total) against the chip's HBM with a `fits` verdict (a program
XLA cannot fit reports "does not fit" with its numbers); model FLOPs per chip per step and
XLA's own count; the collectives by kind and dtype with their bytes; the custom calls (cuDNN
attention, TPU kernels); XLA's estimated step time and the MFU it implies (for GPUs XLA has no
cost analysis: a roofline lower bound instead). "auto" settings resolve for the target: bf16
compute, splash attention on TPU, cuDNN attention on GPU. Exit status 2 for bad input, 1 when
the program does not fit.
"""
import json

from absl import logging

from core import cli
from lm.compile import DEFAULT_CONFIG
from lm.compile.program import compile_train_step, report, topology_devices
from lm.errors import ConfigError
from lm.train import config_flag

PARSER = cli.parser("python -m lm.compile", __doc__)
config_flag.add_config(PARSER, DEFAULT_CONFIG)
PARSER.add_argument("--topology", default="v5p:2x2x2",
                    help="TPU topology (v5p:2x2x2, v4:2x2x1, v5e:4x4, v6e:2x2, ...) or GPU "
                         "nodes (h100:8, h200:8, a100:8, h100:2x8)")


@cli.main(ConfigError)
def main(argv) -> int:
    args, config = config_flag.parse(PARSER, argv)
    logging.set_verbosity(logging.ERROR)
    devices = topology_devices(args.topology)
    compiled, facts = compile_train_step(config, devices)
    record = {"topology": args.topology, **report(compiled, facts, config, devices)}
    print(json.dumps(record, indent=1), flush=True)
    return 0 if record["fits"] else 1
