"""WORKDIR/provenance.json: what produced a run, so that a number can be traced months later.

Each leg of a run (its first start, and every resume on a different environment) records the
versions of Python and the libraries that decide the numbers, the project's git commit and
whether its tree had uncommitted changes, the backend, device kind and count, and the process
count. A resume in the same environment adds nothing; a resume on other versions is allowed
and appended as a new leg with the step it started from.
"""
import datetime
import importlib.metadata
import os
import platform
import subprocess

import jax

from lm.train import workdir as run_files

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorstore", "numpy",
            "optiscale")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def environment() -> dict:
    """This process's environment: versions, git state and devices (no timestamps)."""
    devices = jax.devices()
    return {"python": platform.python_version(),
            "packages": {name: _version(name) for name in PACKAGES},
            "git": git_state(REPO),
            "backend": jax.default_backend(), "device_kind": devices[0].device_kind,
            "device_count": len(devices), "process_count": jax.process_count(),
            "platform": platform.platform()}


def git_state(path: str) -> dict | None:
    """{"commit", "dirty"} of the git checkout at `path`; None outside one (an installed
    package) or without git."""
    def git(*args):
        return subprocess.run(["git", "-C", path, *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def record(workdir: str, start_step: int) -> None:
    """Appends this environment to WORKDIR/provenance.json as a new leg unless the last leg
    has the same one."""
    path = os.path.join(workdir, run_files.PROVENANCE)
    legs = run_files.read_json(path).get("legs", [])
    current = environment()
    if legs and {k: v for k, v in legs[-1].items() if k not in ("start_step", "started")} \
            == current:
        return
    legs.append({"start_step": start_step,
                 "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                     timespec="seconds"), **current})
    run_files.write_json(path, {"legs": legs})


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
