"""Checks of a config that run before any data is read or anything compiles (a workdir's:
lm/train/workdir.py).

Each failure raises `ConfigError` with a message that names the field, the problem and the fix.
"""
import difflib
import math
import os
import runpy

import jax

from data.settings import DATA
from lm.errors import ConfigError
from lm.model import mx
from lm.model.settings import ATTENTION_BACKEND, MODEL
from lm.train import loggers
from lm.train.settings import PRECISION, TRAIN


def check_override_keys(argv: list[str], flag_name: str = "config",
                        default: str | None = None) -> None:
    """Rejects `--config.a.b=v` flags whose key path is not in the config file's config (the
    `default` file when argv gives none).

    ml_collections would fail with a bare AttributeError; this names the key and close matches.
    A key given twice is refused too: ml_collections would keep the last value of a scalar but
    concatenate two tuples, so one rule (each key once) is the only unsurprising one.
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
    seen = set()
    for flag in argv:
        if not flag.startswith(f"--{flag_name}."):
            continue
        key = flag[len(flag_name) + 3:].split("=", 1)[0]
        if key in seen:
            raise ConfigError(f"--{flag_name}.{key} is given twice; give each key once (a "
                              "tuple field takes all its values in one flag, e.g. "
                              "--config.data.eval_corpora=\"('en_docs', 'code_py')\")")
        seen.add(key)
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
    """Every section against its definitions (each field's allowed values and ranges, and the
    cross-field rules of its subsystem: lm/model/settings.py, data/settings.py,
    lm/train/settings.py), then what spans sections or needs the devices of `backend` (default:
    JAX's default backend). The mesh's own checks: lm/train/sharding.py."""
    m, d, t = config.model, config.data, config.train
    for key, value in _numbers(config):
        _require(math.isfinite(value), f"{key}={value} is not a finite number; every number in "
                 "a config must be finite")
    for section in (MODEL, DATA, TRAIN, PRECISION):
        try:
            section.check(config[section.name])
        except ValueError as err:
            raise ConfigError(str(err)) from err
    backend = backend or jax.default_backend()
    needs = ATTENTION_BACKEND.get(m.attention)
    _require(needs in (None, backend),
             f"model.attention={m.attention!r} runs on {needs.upper() if needs else ''} only "
             f"and this run's devices are {backend}; use model.attention=auto (or einsum / xla)")
    _require(d.seq_len <= m.max_seq_len,
             f"data.seq_len={d.seq_len} is larger than the rotary table "
             f"(model.max_seq_len={m.max_seq_len}); lower data.seq_len or raise "
             "model.max_seq_len")
    try:
        mx.formats_from_config(config.precision)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    loggers.check(t.get("loggers", "jsonl"))
    if t.get("harness_tasks"):
        try:
            from lm.train import harness
        except ImportError as err:
            raise ConfigError(f"train.harness_tasks needs lm-evaluation-harness ({err}); pip "
                              "install lm_eval, or set train.harness_tasks=''") from err
        harness.check_tasks(harness.task_names(t.harness_tasks), t.harness_include_path)
    if t.get("profile_steps"):
        first, last = profile_window(t.profile_steps)
        _require(2 <= first <= last <= t.steps,
                 f"train.profile_steps={t.profile_steps!r}: give FIRST:LAST with 2 <= FIRST <= "
                 f"LAST <= train.steps={t.steps} (step 1 compiles), e.g. '20:25'")


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
