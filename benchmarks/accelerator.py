"""The accelerator measurements in one run, for any GPU (or TPU) a session is lent:

    python -m benchmarks.accelerator [--results_file results.jsonl]
    python -m benchmarks.accelerator --quick    # tiny shapes: proves the script, on any CPU

JSON lines, each with the device named:
  matmul      a bf16 8192^3 matmul's FLOP/s: the practical peak, beside the datasheet's
  mfu         the train step at ~125M (d768_l12) and ~1B (d2048_l20), 2048-token sequences,
              AdamW, the "auto" policy (bf16 compute, cuDNN attention on GPU), scanned layers:
              model FLOPs (lm/model/info.py) per second over the chip's dense bf16 peak
              (lm/compile/chips.py), and over the measured matmul
  optimizer   SOAP (configs/soap_scaled.py): its step time over AdamW's at 1B, measured in
              the same run
  mx          the MX emulation (MXFP8 E4M3 everywhere) over the step in the auto policy (bf16
              on a GPU) at 1B
  losses      the first 20 losses of a small model (d256_l4, 16 x 256 tokens) on this device
              in its auto policy and on the host CPU in float32, same initialisation and
              batches: the largest difference, against bf16's resolution
Each timing is the median of --repeats timed steps after a compile and warm-up step.

--quick runs the same code on tiny shapes (`QUICK`: d32_l2 and d64_l2, 64-token sequences, a
256^3 matmul) in under a minute on a CPU: CI runs it (tests/test_accelerator_benchmark.py), so
the script is known to work before a device is lent. Its rows say "shapes": "quick"; they are
no measurement.
"""
import dataclasses
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from configs import base, soap_scaled
from configs import mx as mx_presets
from core import cli
from lm.compile.chips import chip_of
from lm.model import ModelConfig
from lm.model.info import flops_per_token
from lm.train.timing import build, median_seconds, random_windows


@dataclasses.dataclass(frozen=True)
class Shapes:
    """What the script measures: the matmul's size, the loss check's model, batch and sequence,
    the (size, batch, sequence) of the MFU runs (the last one also for SOAP and MX), and the
    vocabulary of every train step."""
    name: str
    matmul_n: int
    losses: tuple[str, int, int]
    runs: tuple[tuple[str, int, int], ...]
    vocab: int


FULL = Shapes("full", 8192, ("d256_l4", 16, 256),
              (("d768_l12", 32, 2048), ("d2048_l20", 16, 2048)), 32768)
QUICK = Shapes("quick", 256, ("d32_l2", 4, 64), (("d32_l2", 4, 64), ("d64_l2", 4, 64)), 512)


def matmul_row(repeats: int, n: int) -> dict:
    a, b = (jax.random.normal(jax.random.PRNGKey(i), (n, n), jnp.bfloat16) for i in (0, 1))
    mm = jax.jit(lambda x, y: x @ y)
    seconds = median_seconds(lambda: mm(a, b).block_until_ready(), repeats)
    return {"bench": "matmul", "n": n, "dtype": "bfloat16", "flops_per_s": 2 * n**3 / seconds}


def step_seconds(config, batch: int, seq: int, vocab: int, repeats: int) -> float:
    """Median seconds of one train step of `config` on random tokens."""
    config.data.seq_len = seq
    config.model.max_seq_len = max(seq, config.model.max_seq_len)
    config.train.batch_size = batch
    rt, state, _ = build(config, seq, vocab)
    windows = random_windows(rt, batch, seq, vocab)
    holder = [state]

    def one_step():
        holder[0], metrics, _ = rt.train_step(holder[0], windows)
        jax.block_until_ready(metrics)

    one_step()  # compile
    return median_seconds(one_step, repeats)


def scaled(size: str, vocab: int, optimizer: str = "adamw"):
    config = soap_scaled.get_config(size) if optimizer == "soap_scaled" else base.get_config(size)
    config.model.scan_layers = True
    config.data.tokenizer, config.data.vocab_size = "bpe", vocab
    return config


def mfu_row(size, batch, seq, vocab, seconds, peak, matmul) -> dict:
    cfg = ModelConfig.for_run(scaled(size, vocab), vocab)
    flops = flops_per_token(cfg, seq) * batch * seq / seconds
    return {"bench": "mfu", "size": size, "batch": batch, "seq_len": seq, "step_s": seconds,
            "tokens_per_s": batch * seq / seconds, "model_flops_per_s": flops,
            "mfu": flops / peak if peak else None, "fraction_of_matmul": flops / matmul,
            "dtype": cfg.dtype, "attention": cfg.attention}


def loss_row(shapes: Shapes, steps: int = 20) -> dict:
    """First `steps` losses on this device (its auto policy) and on the host CPU (float32), from
    the same initialisation and batches."""
    size, batch, seq = shapes.losses
    vocab = min(shapes.vocab, 8192)

    def losses(devices):
        config = base.get_config(size)
        config.train.batch_size, config.data.seq_len = batch, seq
        config.model.max_seq_len = max(seq, config.model.max_seq_len)
        config.mesh.update(dict(data=1))
        rt, state, _ = build(config, seq, vocab, devices[:1])
        rng = np.random.default_rng(0)
        out = []
        for _ in range(steps):
            windows = rng.integers(0, vocab, (batch, seq + 1)).astype(np.int32)
            state, metrics, _ = rt.train_step(state, jax.device_put(windows, rt.sharder.batch))
            out.append(float(metrics["train/loss"]))
        return out, ModelConfig.for_run(config, vocab, backend=devices[0].platform)

    accelerator, cfg = losses(jax.devices())
    cpu, _ = losses(jax.devices("cpu"))
    diffs = np.abs(np.array(accelerator) - np.array(cpu))
    return {"bench": "losses", "size": size, "steps": steps, "accelerator_dtype": cfg.dtype,
            "accelerator_attention": cfg.attention, "accelerator": accelerator,
            "cpu_float32": cpu, "max_abs_difference": float(diffs.max()),
            "max_relative_difference": float((diffs / np.array(cpu)).max())}


PARSER = cli.parser("python -m benchmarks.accelerator", __doc__)
PARSER.add_argument("--quick", action="store_true",
                    help="tiny shapes and 2 repeats: checks the script end to end (CI runs it "
                         "on CPU); no measurement")
PARSER.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
PARSER.add_argument("--results_file", default="", old=("--out",),
                    help="a JSON-lines file each row is appended to as well ('': none)")


@cli.main()
def main(argv) -> None:
    args = PARSER.parse_args(argv)
    shapes, repeats = (QUICK, 2) if args.quick else (FULL, args.repeats)
    device = jax.devices()[0]
    chip = chip_of(device.device_kind)
    machine = {"device": device.device_kind, "backend": jax.default_backend(),
               "jax": jax.__version__, "peak_bf16_flops_per_s": chip.bf16_flops_per_s
               if chip else None, "shapes": shapes.name}
    sink = open(args.results_file, "a") if args.results_file else None

    def emit(row):
        line = json.dumps({**row, **machine})
        print(line, flush=True)
        if sink:
            sink.write(line + "\n")
            sink.flush()

    emit(loss_row(shapes))
    matmul = matmul_row(repeats, shapes.matmul_n)
    emit(matmul)
    peak = chip.bf16_flops_per_s if chip else None
    vocab = shapes.vocab
    adamw = None
    for size, batch, seq in shapes.runs:
        adamw = step_seconds(scaled(size, vocab), batch, seq, vocab, repeats)
        emit(mfu_row(size, batch, seq, vocab, adamw, peak, matmul["flops_per_s"]))
    size, batch, seq = shapes.runs[-1]
    seconds = step_seconds(scaled(size, vocab, "soap_scaled"), batch, seq, vocab, repeats)
    emit({"bench": "optimizer", "size": size, "optimizer": "soap (configs/soap_scaled.py)",
          "step_s": seconds, "over_adamw": seconds / adamw})
    mx = scaled(size, vocab)
    mx.precision = mx_presets.get_config("e4m3/e4m3").precision
    mx.precision.activation_dtype = "auto"
    seconds = step_seconds(mx, batch, seq, vocab, repeats)
    emit({"bench": "mx", "size": size, "preset": "e4m3/e4m3", "step_s": seconds,
          "over_auto_policy": seconds / adamw})

if __name__ == "__main__":
    sys.exit(main())
