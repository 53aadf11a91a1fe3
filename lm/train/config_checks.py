"""Checks of a config that run before any data is read or anything compiles (a workdir's:
lm/train/workdir.py).

Each failure raises `ConfigError` with a message that names the field, the problem and the fix.
"""
import difflib
import math
import os
import runpy
import sys

import jax

from lm.errors import ConfigError
from lm.model import ACTIVATIONS, NORMS, attention, mx
from lm.model.config import DTYPES, REMATS
from lm.model.layers import NORM_AFFINE
from lm.train import loggers

# Attention kernels that run on one backend only.
_ATTENTION_BACKEND = {"cudnn": "gpu", "splash": "tpu"}


def check_override_keys(argv: list[str], flag_name: str = "config",
                        default: str | None = None) -> None:
    """Rejects `--config.a.b=v` flags whose key path is not in the config file's config (the
    `default` file when argv gives none).

    ml_collections would fail with a bare AttributeError; this names the key and close matches.
    """
    path = next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag_name}=")), default)
    if path is None:
        return
    file_path, _, arg = path.partition(":")
    if not os.path.exists(file_path):
        raise ConfigError(f"config file {file_path!r} does not exist; pass e.g. "
                          f"--{flag_name}=configs/quickstart.py")
    try:
        get_config = runpy.run_path(file_path)["get_config"]
        config = get_config(arg) if arg else get_config()
    except Exception as err:  # a syntax error, a bad argument (ladder size): the user's to fix
        raise ConfigError(f"config {path!r} cannot be loaded: {type(err).__name__}: {err}; fix "
                          "the file or the part after ':'") from err
    for flag in argv:
        if not flag.startswith(f"--{flag_name}."):
            continue
        key = flag[len(flag_name) + 3:].split("=", 1)[0]
        node, walked = config, []
        for part in key.split("."):
            if not hasattr(node, "keys") or part not in node:
                options = sorted(node.keys()) if hasattr(node, "keys") else []
                close = difflib.get_close_matches(part, options, n=3)
                where = ".".join([flag_name, *walked]) or flag_name
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(f"unknown config key --{flag_name}.{key}: {where} has no field "
                                  f"{part!r}.{hint} Valid fields: {', '.join(options)}.")
            node = node[part]
            walked.append(part)


def _numbers(node, prefix: str = ""):
    """(dotted key, value) of every float in a config, nested sections and tuples included."""
    if hasattr(node, "items"):
        items = ((f"{prefix}.{key}" if prefix else key, value) for key, value in node.items())
    else:
        items = ((f"{prefix}[{i}]", value) for i, value in enumerate(node))
    for name, value in items:
        if isinstance(value, float):
            yield name, value
        elif hasattr(value, "items") or isinstance(value, (tuple, list)):
            yield from _numbers(value, name)


def check_config(config, backend: str | None = None) -> None:
    """Semantic checks of model, data, train and precision fields (the mesh's:
    lm/train/sharding.py), for devices of `backend` (default: JAX's default backend)."""
    m, d, t = config.model, config.data, config.train
    for key, value in _numbers(config):
        _require(math.isfinite(value), f"{key}={value} is not a finite number; every number in "
                 "a config must be finite")
    backend = backend or jax.default_backend()
    _require(m.attention in attention.IMPLEMENTATIONS,
             f"model.attention={m.attention!r} is not one of {attention.IMPLEMENTATIONS}")
    needs = _ATTENTION_BACKEND.get(m.attention)
    _require(needs in (None, backend),
             f"model.attention={m.attention!r} runs on {needs.upper() if needs else ''} only "
             f"and this run's devices are {backend}; use model.attention=auto (or einsum / xla)")
    _require(m.remat in REMATS, f"model.remat={m.remat!r} is not one of {REMATS}")
    _require(m.loss_chunk >= -1, f"model.loss_chunk={m.loss_chunk} must be -1 (automatic), 0 "
             "(no chunks) or a number of tokens per chunk")
    _require(m.norm in NORMS, f"model.norm={m.norm!r} is not one of {NORMS}")
    _require(m.activation in ACTIVATIONS,
             f"model.activation={m.activation!r} is not one of {ACTIVATIONS}")
    for key in ("d_model", "n_layers", "n_heads"):
        _require(m[key] > 0, f"model.{key}={m[key]} must be positive")
    if not m.head_dim:
        _require(m.d_model % m.n_heads == 0,
                 f"model.d_model={m.d_model} is not divisible by model.n_heads={m.n_heads}; "
                 "choose n_heads dividing d_model, or set model.head_dim explicitly")
    kv = m.n_kv_heads or m.n_heads
    _require(m.n_heads % kv == 0,
             f"model.n_heads={m.n_heads} is not divisible by model.n_kv_heads={kv}; grouped-"
             "query attention needs each kv head to serve a whole number of query heads")
    head_dim = m.head_dim or m.d_model // m.n_heads
    _require(head_dim % 2 == 0, f"head dimension {head_dim} is odd; rotary embedding rotates "
             "pairs of dimensions: choose an even model.head_dim (or d_model / n_heads)")
    _require(m.mup_base_width >= 0,
             f"model.mup_base_width={m.mup_base_width} must be >= 0 (0: standard "
             "parameterization)")
    _require(d.seq_len <= m.max_seq_len,
             f"data.seq_len={d.seq_len} is larger than the rotary table "
             f"(model.max_seq_len={m.max_seq_len}); lower data.seq_len or raise "
             "model.max_seq_len")
    _require(d.seq_len > 0, f"data.seq_len={d.seq_len} must be positive")
    try:
        mx.formats_from_config(config.precision)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    _require(config.precision.norm_affine in NORM_AFFINE,
             f"precision.norm_affine={config.precision.norm_affine!r} is not one of "
             f"{NORM_AFFINE}")
    _require(config.precision.activation_dtype in DTYPES,
             f"precision.activation_dtype={config.precision.activation_dtype!r} is not one "
             f"of {DTYPES}")
    for key in ("steps", "batch_size", "microbatches", "eval_every", "checkpoint_every",
                "log_every", "keep_checkpoints"):
        _require(t[key] > 0, f"train.{key}={t[key]} must be positive")
    _require(t.loss_spike_window > 0 and t.loss_spike_ratio > 1,
             f"train.loss_spike_window={t.loss_spike_window} must be positive and "
             f"train.loss_spike_ratio={t.loss_spike_ratio} above 1")
    _require(t.layer_stats_every >= 0,
             f"train.layer_stats_every={t.layer_stats_every} must be >= 0 (0 disables)")
    loggers.check(t.get("loggers", "jsonl"))
    if t.get("profile_steps"):
        first, last = profile_window(t.profile_steps)
        _require(2 <= first <= last <= t.steps,
                 f"train.profile_steps={t.profile_steps!r}: give FIRST:LAST with 2 <= FIRST <= "
                 f"LAST <= train.steps={t.steps} (step 1 compiles), e.g. '20:25'")
    _require(t.batch_size % t.microbatches == 0,
             f"train.batch_size={t.batch_size} is not divisible by train.microbatches="
             f"{t.microbatches}")


def profile_window(spec: str) -> tuple[int, int]:
    """train.profile_steps "FIRST:LAST" -> (FIRST, LAST); ConfigError names a bad spec."""
    try:
        first, last = (int(part) for part in spec.split(":"))
    except ValueError:
        raise ConfigError(f"train.profile_steps={spec!r} is not FIRST:LAST, e.g. '20:25' ("
                          "'' disables profiling)") from None
    return first, last


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def exit_on_unknown_keys(default_config: str | None = None) -> None:
    """Exit status 2, naming the key and the fix, for an unknown --config.* key in sys.argv:
    run before absl defines a config flag with a default (it applies the overrides then)."""
    try:
        check_override_keys(sys.argv[1:], default=default_config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
