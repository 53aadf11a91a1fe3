"""All-or-nothing publication of local build outputs (fetched corpora, run files) and locks.

A build writes into a fresh temporary sibling of its destination, which is renamed into place
only when the build returned, so a reader never sees a half-written directory. A lock file
(`.NAME.lock`, empty, left in place) serialises builders of the same destination; the
temporaries (`.NAME.tmp-PID`) of builds that were killed are removed by the next builder, which
is safe because it holds the lock. (Prepared arrays and tokenizers go through TensorStore
kvstores, local or remote: `data.prepare` marks completion with a file written last.)
"""
import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Callable, Optional


@contextlib.contextmanager
def locked(lock_path: Path, wait: bool = True):
    """Holds an exclusive lock on `lock_path` (created empty if missing) while in the block and
    yields the open lock file; with `wait=False`, BlockingIOError if another process holds it.
    The kernel releases the lock when its holder dies, however it dies."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        try:
            yield f
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_once(final: Path, build: Callable[[Path], None], marker: str) -> Path:
    """Runs `build(tmp_dir)` and renames `tmp_dir` to `final`, unless `final/marker` exists.

    `build` must write `marker` last. Returns `final`. If `build` raises, its temporary is removed
    and nothing is published.
    """
    final = Path(final)
    if (final / marker).exists():
        return final
    with locked(final.parent / f".{final.name}.lock"):
        if (final / marker).exists():  # another process built it while we waited
            return final
        for stale in final.parent.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(stale)
        if final.exists():  # not complete (no marker): never published by build_once
            shutil.rmtree(final)
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
        tmp.mkdir()
        try:
            build(tmp)
            if not (tmp / marker).exists():
                raise RuntimeError(f"build of {final} did not write {marker}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.replace(tmp, final)
    return final


def set_aside(directory: Path, version: Callable[[], Optional[str]],
              current: str) -> Optional[tuple[str, Path]]:
    """Renames `directory` to DIRECTORY.<its version[:12]> when the version its contents record
    (`version()`, read under the directory's build lock; None: nothing there) is not `current`,
    so that the current version is built in its place and the other one is kept whole. Returns
    (that version, where it went), or None when nothing moved; FileExistsError when that name is
    taken."""
    directory = Path(directory)
    with locked(directory.parent / f".{directory.name}.lock"):
        old = version()
        if old is None or old == current:  # nothing there, set aside meanwhile, or current
            return None
        aside = directory.with_name(f"{directory.name}.{old[:12] or 'unknown'}")
        if aside.exists():
            raise FileExistsError(aside)
        os.replace(directory, aside)
    return old, aside


def write_file(path: Path, data: bytes) -> None:
    """Writes `data` to `path` via a temporary file and a rename: readers see all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
