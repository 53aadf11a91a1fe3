"""A run's directory: the name of every file that lm.train and lm.sweep keep in it, how the
JSON ones are written and checked, and the path layer every run-file access goes through.

    WORKDIR/config.json        the resolved config (a resume with another config adds
                               config.<time>.json beside it)
    WORKDIR/model.json         the model's shape fields, parameter counts and FLOPs per token
    WORKDIR/data.json          each training and validation source's prepared data and the
                               fingerprint of its input files
    WORKDIR/metrics.jsonl      one row per logged step (lm/train/metrics_log.py)
    WORKDIR/checkpoints/       Orbax checkpoints, one folder per step (lm/train/checkpoint.py)
    WORKDIR/checkpoints_corrupt/  checkpoints that failed to restore, moved aside
    WORKDIR/train.log          the output of a run that executes away from the console
    WORKDIR/provenance.json    versions, git commit and devices of each leg (provenance.py)
    WORKDIR/profile/           jax.profiler traces (train.profile_steps)
    WORKDIR/eval/              lm-evaluation-harness results, harness_step<N>.json (lm.evaluate,
                               train.harness_tasks)
    WORKDIR/wandb_id.txt       the W&B run id (train.loggers=wandb), so a resume continues it
    WORKDIR/sweep_run.json     lm.sweep's record of the run's latest attempt
    WORKDIR/.lock              held by the trainer that runs in it: pid, host and start time

A workdir is a local path or a URL of any fsspec filesystem: gs://bucket/run on a TPU pod
(needs gcsfs), memory://run in tests. Every file is written whole or not at all: locally a
temporary file and a rename (`data.atomic`), so a kill never leaves a half-written one behind;
on an object store a whole-object write already is all or nothing, and an append (which it
lacks) reads the object and writes it back whole. Paths are joined with os.path.join, which
keeps a URL intact.
"""
import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

import fsspec
import jax.numpy as jnp
from fsspec.implementations.local import LocalFileSystem
from fsspec.registry import known_implementations

from core import run_format
from core.run_format import CONFIG, METRICS, MODEL  # the files scaling reads too
from data import atomic
from lm.errors import ConfigError
from lm.model import ModelConfig

DATA = "data.json"
PROVENANCE = "provenance.json"
PROFILE = "profile"
HARNESS = "eval"
WANDB_ID = "wandb_id.txt"
CHECKPOINTS = "checkpoints"
CORRUPT_CHECKPOINTS = "checkpoints_corrupt"
TRAIN_LOG = "train.log"
SWEEP_RECORD = "sweep_run.json"
LOCK = ".lock"
RUN_MARKERS = (METRICS, CONFIG, CHECKPOINTS)  # what makes a directory a run's


def _filesystem(path) -> tuple[fsspec.AbstractFileSystem | None, str]:
    """(filesystem, path within it) of a URL; (None, the path) of a local path or file:// URL,
    which the os functions handle as they always did. Raises ConfigError, naming the package to
    install, for a URL whose filesystem is not available."""
    path = os.fspath(path)
    try:
        fs, inner = fsspec.core.url_to_fs(path)
    except (ImportError, ValueError) as err:
        protocol = path.split("://", 1)[0]
        known = known_implementations.get(protocol)
        fix = (f"pip install {known['class'].split('.')[0]}" if known
               else "use a local path or a URL of a filesystem fsspec knows")
        raise ConfigError(f"cannot open {path}: {err} ({fix})") from err
    if isinstance(fs, LocalFileSystem):
        return None, inner if "://" in path else path
    return fs, inner


def check_filesystems(*paths) -> None:
    """Raises ConfigError now, before anything compiles, if the filesystem of one of `paths`
    (empty ones skipped) is unavailable: gs:// without gcsfs installed."""
    for path in filter(None, paths):
        _filesystem(path)


def is_local(path) -> bool:
    return _filesystem(path)[0] is None


def absolute(path) -> str:
    """An absolute local path; a URL as it is (os.path.abspath would make it a local path)."""
    fs, inner = _filesystem(path)
    return os.path.abspath(inner) if fs is None else os.fspath(path)


def exists(path) -> bool:
    fs, inner = _filesystem(path)
    return os.path.exists(inner) if fs is None else fs.exists(inner)


def isdir(path) -> bool:
    """Whether `path` is a directory (on an object store: a prefix of some object). The listing
    is read anew, since Orbax writes checkpoints past fsspec's listing cache."""
    fs, inner = _filesystem(path)
    if fs is None:
        return os.path.isdir(inner)
    fs.invalidate_cache(inner)
    return fs.isdir(inner)


def listdir(path) -> list[str]:
    """The names in directory `path`, [] if there is none."""
    if not isdir(path):
        return []
    fs, inner = _filesystem(path)
    if fs is None:
        return os.listdir(inner)
    return [os.path.basename(p.rstrip("/")) for p in fs.ls(inner, detail=False)]


def read_bytes(path) -> bytes:
    fs, inner = _filesystem(path)
    if fs is None:
        with open(inner, "rb") as f:
            return f.read()
    return fs.cat_file(inner)


def read_text(path) -> str:
    return read_bytes(path).decode()


def write_text(path, text: str) -> None:
    """Writes `text` to `path` all or nothing."""
    fs, inner = _filesystem(path)
    if fs is None:
        atomic.write_file(inner, text.encode())
    else:
        fs.pipe_file(inner, text.encode())


def append_text(path, text: str) -> None:
    """Adds `text` at the end of `path` (created if missing); on an object store, by writing
    the whole object again, so keep such files small."""
    fs, inner = _filesystem(path)
    if fs is None:
        with open(inner, "a") as f:
            f.write(text)
    else:
        fs.pipe_file(inner, (fs.cat_file(inner) if fs.exists(inner) else b"") + text.encode())


def move(source, target) -> None:
    """Moves file or directory `source` to `target` (on an object store: copies, then
    deletes, object by object)."""
    (fs, inner), target = _filesystem(source), _filesystem(target)[1]
    if fs is None:
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        shutil.move(inner, target)
    else:
        fs.mv(inner, target, recursive=True)


class InUse(ConfigError):
    """A directory that another live process holds (`held`): not a failure of the run that met
    it, which a later attempt trains once the holder has ended."""


def check_directory(path, flag: str) -> None:
    """Raises ConfigError, naming `flag`, if local `path` exists and is not a directory."""
    if is_local(path) and os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag}={path} is a file, not a directory; give a new or existing "
                          f"directory as {flag}")


@contextlib.contextmanager
def held(workdir: str, user: str = "trainer", flag: str = "--workdir"):
    """One `user` per directory (a trainer per workdir; lm.sweep and lm.study per root): holds
    an exclusive lock on DIR/.lock while in the block; a second one gets InUse naming the
    holder. The kernel releases the lock when its holder dies (kill -9, a crash, a reboot), so
    a dead holder never blocks its resume. A URL (an object store has no locks) is not locked:
    run one at a time on it."""
    if not is_local(workdir):
        yield
        return
    created = not os.path.exists(workdir)
    path = Path(workdir, LOCK)
    with contextlib.ExitStack() as stack:
        try:
            f = stack.enter_context(atomic.locked(path, wait=False))
        except BlockingIOError:
            holder = path.read_text().strip() or "a process that has not written its name yet"
            raise InUse(f"{flag.lstrip('-')} {workdir} is in use by another {user} ({holder}); "
                        "wait for it to finish or stop it (it saves a checkpoint on SIGTERM), "
                        f"or use another {flag}") from None
        except OSError as err:
            raise ConfigError(f"cannot use {flag}={workdir}: {err.strerror} "
                              f"({err.filename}); give a writable directory") from err
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        try:
            yield
        finally:
            if created and os.listdir(workdir) == [LOCK]:  # refused before it wrote anything
                path.unlink()
                os.rmdir(workdir)


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2))


def read_json(path) -> dict:
    """The JSON object at `path`, {} if there is none; run_format.DamagedFile, naming the file
    and the fix, if it is damaged (torn, edited, or not an object). Every JSON run file of lm
    is read through here, so damage is one `error:` line rather than a traceback."""
    return run_format.parse_json(read_bytes(path), path) if exists(path) else {}


def write_run_files(workdir: str, config, record: dict) -> None:
    """config.json and model.json; a resume with a changed config keeps the first config.json
    and writes the new one beside it, so what each leg of the run used stays on record."""
    resolved = json.loads(config.to_json())
    path = os.path.join(workdir, CONFIG)
    if exists(path) and read_json(path) != resolved:
        path = os.path.join(workdir, f"config.{time.strftime('%Y%m%d-%H%M%S')}.json")
    write_json(path, resolved)
    write_json(os.path.join(workdir, MODEL), record)


def model_record(model_cfg: ModelConfig, info: dict) -> dict:
    """What model.json holds: the resolved model config and its size figures."""
    return {"model": _shape_fields(model_cfg), "dtype": str(jnp.dtype(model_cfg.dtype)), **info}


def check_model(workdir: str, model_cfg: ModelConfig) -> None:
    """A workdir that already holds a run must hold one of the same model shape."""
    path = os.path.join(workdir, MODEL)
    if not exists(path):
        return
    previous = read_json(path)["model"]
    previous.setdefault("norm_affine", True)  # runs from before these fields existed
    previous.setdefault("scan_layers", False)
    current = _shape_fields(model_cfg)
    diff = {k: (previous.get(k), v) for k, v in current.items() if previous.get(k) != v}
    if diff:
        changes = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in sorted(diff.items()))
        raise ConfigError(f"workdir {workdir} holds a run with a different model shape "
                          f"({changes}); use a new --workdir, or the model config of that run "
                          f"(see {path})")


def check_data(workdir: str, inputs: dict) -> None:
    """A resumed run must read the same input as before: a source whose files changed since
    the run started (so it was prepared afresh) is refused, never silently swapped in."""
    path = os.path.join(workdir, DATA)
    previous = read_json(path) if exists(path) else {}
    for name, record in inputs.items():
        before = previous.get(name)
        if before and before["fingerprint"] != record["fingerprint"]:
            raise ConfigError(f"source {name!r} ({record['source']}) changed since this run "
                              f"started: it was prepared at {before['path']}, its files now "
                              f"give {record['path']}. Restore the files the run started with, "
                              "or train on the new ones in a new --workdir")


def _shape_fields(model_cfg: ModelConfig) -> dict:
    """The model fields that fix parameter shapes and meaning (how it is computed may change on
    resume: the dtype, MX formats, attention kernel, rematerialization and matmul layout)."""
    fields = dict(vars(model_cfg))
    for computation in ("dtype", "mx", "mx_layers", "attention", "remat", "flat_matmuls"):
        fields.pop(computation)
    fields["norm_affine"] = model_cfg.norm_affine != "none"  # float32 <-> bfloat16 may change
    return fields
