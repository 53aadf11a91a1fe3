"""JAX on a machine without accelerators runs on the CPU, quietly.

With the `tpu` or `cuda` extra installed, JAX starts every plugin it finds: on a machine with no
TPU or GPU, libtpu logs its host-bounds and worker-hostname errors and the CUDA plugin a failed
cuInit with a traceback, before each CPU run's own output. `cpu_unless_accelerators` (called by
each package that uses JAX, before JAX is imported) sets JAX_PLATFORMS=cpu when it is unset and
no accelerator's device node exists, so the extras change nothing on a CPU machine. On a GPU or
TPU host (its device nodes exist), or when JAX_PLATFORMS is set, nothing changes. Compile-only
topologies (lm.compile) work under JAX_PLATFORMS=cpu.
"""
import glob
import os
import sys

# NVIDIA GPUs, AMD GPUs (ROCm), TPU v2 to v5e (/dev/accel*), TPU v5p and v6e (VFIO groups).
DEVICE_NODES = ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/accel[0-9]*", "/dev/vfio/[0-9]*")


def cpu_unless_accelerators() -> None:
    """JAX_PLATFORMS=cpu unless it is set, JAX is already imported (its settings are read),
    this is not Linux (no device nodes to look at), or an accelerator's device node exists."""
    if "JAX_PLATFORMS" in os.environ or "jax" in sys.modules:
        return
    if not sys.platform.startswith("linux"):
        return
    if any(glob.glob(pattern) for pattern in DEVICE_NODES):
        return
    os.environ["JAX_PLATFORMS"] = "cpu"
