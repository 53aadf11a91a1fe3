"""A run's real train step compiled ahead of time for a TPU topology, on any machine.

`libtpu` (the `tpu` extra) gives compile-only devices of a topology that need no TPU
(`jax.experimental.topologies`); `jax.jit(...).lower(...).compile()` then returns the program
the pod would run, whose memory, cost and collectives this module reports.
"""
import collections
import math
import os
import re

import jax
import jax.numpy as jnp
from jax.experimental import topologies

from lm.compile import gpus
from lm.compile.chips import chip_of
from lm.errors import ConfigError
from lm.model import ModelConfig
from lm.model.info import model_info
from lm.train import runtime, sharding
from lm.train.build import planned_vocab_size
from lm.train.config_checks import check_config

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_COLLECTIVE = re.compile(r"= (?P<shape>.+?) (?P<kind>" + "|".join(COLLECTIVES)
                         + r")(?P<start>-start)?\(")
_ARRAY = re.compile(r"(?P<dtype>[a-z]+\d*)\[(?P<dims>[\d,]*)\]")
_OOM = re.compile(r"memory required for HLO temporaries \((?P<need>[\d.]+)G\) exceeds "
                  r"available HBM \((?P<have>[\d.]+)G\)")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4,
          "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8}

_TOPOLOGY_FIX = ("give a topology such as v5p:2x2x2, v4:2x2x1, v5e:4x4 or v6e:2x2 (TPU), or "
                 "h100:8, h200:8, a100:8 or h100:2x8 (GPU nodes)")


def topology_devices(name: str) -> list:
    """Compile-only devices of TPU topology `name`: "v5p:2x2x2", "v4:2x2x1", "v5e:4x4",
    "v6e:2x2", ... (up to 512 chips; v4 is laid out as megacore chips), or of GPU nodes:
    "h100:8", "h200:8", "a100:8", "h100:2x8" (lm/compile/gpus.py). An empty name is
    refused here: libtpu would take it for its default topology, and the compile would fail
    deep in Mosaic."""
    if not name.strip():
        raise ConfigError(f"--topology={name!r} is empty: {_TOPOLOGY_FIX}")
    if gpus.is_gpu_topology(name):
        return gpus.gpu_devices(name)
    extra = {"chip_config_name": "megacore"} if name.startswith("v4") else {}
    # Compile-only devices hold no chip: several processes (a training run's and this one, or
    # parallel tests) may load libtpu at once.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        return list(topologies.get_topology_desc(platform="tpu", topology_name=name,
                                                 **extra).devices)
    except Exception as err:  # libtpu missing, or a name it does not know
        raise ConfigError(f"--topology={name!r}: {err}. Install the tpu extra (pip install -e "
                          f"'.[tpu]') and {_TOPOLOGY_FIX}") from None


def compile_train_step(config, devices):
    """(compiled program or None, facts): the run's train step for `devices`, as lm.train
    would build it; None with facts["out_of_memory"] when XLA cannot fit it in HBM."""
    backend = devices[0].platform
    check_config(config, backend)
    sharder = sharding.from_config(config, devices)
    model_cfg = ModelConfig.for_run(config, planned_vocab_size(config), backend=backend)
    optimizer = runtime.build_optimizer(config)
    rt = runtime.build_for_run(config, model_cfg, optimizer.tx, sharder)
    batch = jax.ShapeDtypeStruct((config.train.batch_size, config.data.seq_len + 1), jnp.int32,
                                 sharding=sharder.batch)
    facts = {"mesh": sharder.describe(), "model_cfg": model_cfg,
             "optimizer_state_bytes": bytes_per_chip(rt.abstract_state.opt_state)}
    try:
        return rt.train_step.lower(rt.abstract_state, batch).compile(), facts
    except jax.errors.JaxRuntimeError as err:
        found = _OOM.search(str(err))
        if found is None:
            raise
        facts["out_of_memory"] = {k: float(v) * 2**30 for k, v in found.groupdict().items()}
        return None, facts


def bytes_per_chip(tree) -> int:
    """The bytes one chip holds of the sharded abstract arrays in `tree`: each leaf's shard
    (the most any device holds; shards of a NamedSharding are equal up to padding)."""
    return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize
               for x in jax.tree.leaves(tree))


def report(compiled, facts: dict, config, devices) -> dict:
    """The JSON record lm.compile prints (see lm/compile/cli.py)."""
    chip = chip_of(devices[0].device_kind)
    model_cfg = facts["model_cfg"]
    info = model_info(model_cfg, config.data.seq_len)
    tokens = config.train.batch_size * config.data.seq_len
    model_flops = info["flops_per_token"] * tokens / len(devices)
    out = {"chips": len(devices), "chip": chip.name if chip else devices[0].device_kind,
           "mesh": facts["mesh"], "params": info["params/total"],
           "batch": config.train.batch_size, "seq_len": config.data.seq_len,
           "dtype": model_cfg.dtype, "attention": model_cfg.attention,
           "remat": model_cfg.remat, "scan_layers": model_cfg.scan_layers,
           "model_flops_per_chip": model_flops, "optimizer": config.optimizer.name,
           "optimizer_state_bytes": facts["optimizer_state_bytes"]}
    if compiled is None:
        oom = facts["out_of_memory"]
        return {**out, "fits": False, "temporaries_bytes": oom["need"],
                "hbm_bytes": oom["have"],
                "verdict": f"does not fit: {oom['need'] / 1e9:.1f} GB of temporaries per chip, "
                           f"{oom['have'] / 1e9:.1f} GB of HBM"}
    memory = compiled.memory_analysis()
    sizes = {"arguments": memory.argument_size_in_bytes, "outputs": memory.output_size_in_bytes,
             "aliased": memory.alias_size_in_bytes, "temporaries": memory.temp_size_in_bytes}
    total = sizes["arguments"] + sizes["outputs"] - sizes["aliased"] + sizes["temporaries"]
    hbm = chip.hbm_bytes if chip else None
    cost = compiled.cost_analysis() or {}  # None for a compile-only GPU
    cost = cost[0] if isinstance(cost, list) else cost
    seconds = cost.get("optimal_seconds")
    text = compiled.as_text()
    out.update({f"{k}_bytes": v for k, v in sizes.items()})
    out.update({"total_bytes": total, "hbm_bytes": hbm, "fits": hbm is None or total <= hbm,
                "xla_flops_per_chip": cost.get("flops"), "xla_estimated_step_s": seconds,
                "collectives": collectives(text), "custom_calls": custom_calls(text)})
    if not cost:
        out["note"] = ("XLA gives no cost analysis for this backend: no XLA step-time estimate; "
                       "roofline_step_s is a lower bound from model FLOPs at the chip's bf16 "
                       "peak and one read of the arguments at its memory bandwidth")
        out["roofline_step_s"] = roofline_seconds(model_flops, sizes["arguments"], chip)
    elif model_cfg.scan_layers:
        out["note"] = ("XLA's cost model counts a loop body once: with scan_layers its FLOPs "
                       "and step time cover one layer's share (compile without scan_layers "
                       "for a step-time estimate)")
    elif seconds and chip:
        out["estimated_mfu"] = model_flops / seconds / chip.bf16_flops_per_s
    return out


def roofline_seconds(flops: float, bytes_read: int, chip) -> float | None:
    """A lower bound on a step's time: its FLOPs at the chip's dense bf16 peak, or its bytes at
    the chip's memory bandwidth, whichever is longer (None for an unknown chip)."""
    if chip is None or not chip.memory_bytes_per_s:
        return None
    return max(flops / chip.bf16_flops_per_s, bytes_read / chip.memory_bytes_per_s)


def custom_calls(hlo_text: str) -> list[str]:
    """The custom-call targets of the program (its kernels outside XLA's own fusions: cuDNN's
    fused attention `__cudnn$fmha...`, cuBLAS GEMMs, TPU kernels), each once, sorted."""
    return sorted(set(re.findall(r'custom_call_target="([^"]+)"', hlo_text)))


def collectives(hlo_text: str) -> list[dict]:
    """Every collective of the program by kind and dtype: how many ops and the bytes of their
    outputs (each op once, as it appears in the program text)."""
    totals = collections.defaultdict(lambda: [0, 0])
    for match in _COLLECTIVE.finditer(hlo_text):
        arrays = _ARRAY.findall(match["shape"])
        if match["start"]:  # an async op's tuple: operands, results, then u32[] contexts
            arrays = [(d, dims) for d, dims in arrays if dims or d not in ("u32", "s32")]
            arrays = arrays[len(arrays) // 2:]
        if not arrays:
            continue
        dtype = arrays[0][0]
        size = sum(_BYTES.get(d, 4) * _product(dims) for d, dims in arrays)
        entry = totals[(match["kind"], dtype)]
        entry[0] += 1
        entry[1] += size
    return [{"kind": kind, "dtype": dtype, "count": n, "bytes": size}
            for (kind, dtype), (n, size) in sorted(totals.items())]


def _product(dims: str) -> int:
    result = 1
    for d in dims.split(","):
        result *= int(d) if d else 1
    return result
