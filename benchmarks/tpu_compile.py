"""The 1B model's train step compiled for TPU v5p slices under each setting that moves its
memory or speed (attention kernel, compute dtype, remat, scanned layers): lm.compile's record per
setting, as JSON lines. Needs the tpu extra (libtpu), no TPU.

    python -m benchmarks.tpu_compile [--topologies v5p:2x2x2,v5p:4x4x4] [--only splash_bf16]
    python -m benchmarks.tpu_compile --topologies v5p:2x2x2 --only splash_bf16_scan_remat_full \
        --optimizers adamw,soap/block_size=512,muon   # each optimizer's state and memory

d2048_l20, 2048-token sequences, 4 per chip (32 on 8 chips, 256 on 64; 16 per chip in
splash_bf16_batch4x), fsdp over all chips; AdamW unless --optimizers names others (each with
its config section's defaults, or NAME/key=value/... for a variant).
"""
import json
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import optim  # noqa: E402
from benchmarks.optimizers import parse_variant  # noqa: E402
from configs import base  # noqa: E402
from core import cli  # noqa: E402
from lm.compile.program import compile_train_step, report, topology_devices  # noqa: E402

SETTINGS = {  # name -> (model.attention, precision.activation_dtype, model.remat, scan_layers,
    #                   sequences per chip)
    "einsum_f32": ("einsum", "float32", "none", False, 4),
    "einsum_bf16": ("einsum", "bfloat16", "none", False, 4),
    "splash_bf16": ("splash", "bfloat16", "none", False, 4),
    "splash_bf16_remat_full": ("splash", "bfloat16", "full", False, 4),
    "splash_bf16_scan": ("splash", "bfloat16", "none", True, 4),
    "splash_bf16_scan_remat_full": ("splash", "bfloat16", "full", True, 4),
    "splash_bf16_batch4x": ("splash", "bfloat16", "none", False, 16),
}


def one_b(topology_chips: int, attention: str, dtype: str, remat: str, scan: bool,
          per_chip: int):
    c = base.get_config("d2048_l20")
    c.model.update(dict(max_seq_len=2048, attention=attention, remat=remat, scan_layers=scan))
    c.precision.activation_dtype = dtype
    c.data.seq_len = 2048
    c.train.batch_size = c.data.eval_batch_size = per_chip * topology_chips
    c.mesh.update(dict(data=1, fsdp=-1, tensor=1))
    return c


PARSER = cli.parser("python -m benchmarks.tpu_compile", __doc__)
PARSER.add_argument("--topologies", default="v5p:2x2x2,v5p:4x4x4")
PARSER.add_argument("--only", default="", help="comma-separated names of SETTINGS")
PARSER.add_argument("--optimizers", default="adamw",
                    help="comma-separated registered optimizers (or NAME/key=value/... "
                         "variants), each compiled per setting")


@cli.main()
def main(argv) -> None:
    args = PARSER.parse_args(argv)
    registered = optim.registered_optimizers()
    for spec in args.optimizers.split(","):
        if parse_variant(spec)[0] not in registered:
            raise cli.UsageError(f"--optimizers: {spec!r} names no registered optimizer; use "
                                 f"NAME or NAME/key=value/... with NAME one of "
                                 f"{', '.join(registered)}")
    names = [n for n in args.only.split(",") if n] or list(SETTINGS)
    for topology in args.topologies.split(","):
        devices = topology_devices(topology)
        for name in names:
            for spec in args.optimizers.split(","):
                config = one_b(len(devices), *SETTINGS[name])
                optimizer, overrides = parse_variant(spec)
                config.optimizer.name = optimizer
                config.optimizer[optimizer].update(overrides)
                compiled, facts = compile_train_step(config, devices)
                record = report(compiled, facts, config, devices)
                print(json.dumps({"bench": "tpu_compile", "topology": topology,
                                  "setting": name, "variant": spec, **record}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
