"""Child processes that never outlive their parent.

A worker (a sweep's run, a data-preparation tokenizer) left running after its parent is killed
holds cores and memory for nothing, and nobody reads what it makes: `die_with_parent` in the
child asks Linux to end it when the parent dies, even by SIGKILL.
"""
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies (Linux)


def die_with_parent(parent: int) -> None:
    """Asks Linux to send this process SIGTERM when its parent `parent` (a pid) dies; elsewhere
    nothing is asked. If the parent died before the request took effect, ends now."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
