"""Compile-only NVIDIA GPUs: XLA's GpuTargetConfigProto for each GPU lm.compile knows, so that a
run's train step compiles for a GPU node (or several) on a machine with no GPU and no driver.

The CUDA build of jaxlib's plugin (`jax-cuda12-plugin`, the `cuda` extra) compiles for a GPU it
is described: `jax.experimental.topologies.get_topology_desc(platform="cuda",
target_config=TEXT, topology="NODESx1xGPUS")`. The figures are the parts' datasheet values
(SM count, clock, HBM size and bandwidth, L2, shared memory per SM and per block) as XLA's own
spec files record them (openxla/xla, xla/backends/gpu/target_config/specs/{h100_sxm,h200,
a100_sxm_80}.txtpb); the cuDNN and CUDA versions are those the cuda extra installs with jax
0.10.2 (cuDNN 9.28, CUDA 12.9), which decide what cuDNN fused attention XLA may emit.
"""
import dataclasses
import os
import re

from lm.errors import ConfigError

GPU_TOPOLOGY = re.compile(r"(?P<gpu>[a-z]\d+):(?:(?P<nodes>\d+)x)?(?P<per_node>\d+)")
INSTALL = "install the cuda extra (pip install -e '.[cuda]'; no GPU or driver needed)"


@dataclasses.dataclass(frozen=True)
class Gpu:
    """One GPU part: what XLA's compiler needs to know of it."""
    device_kind: str  # what jax.Device.device_kind says on the real part
    compute_capability: tuple[int, int]
    sm_count: int
    fp32_units_per_sm: int
    clock_ghz: float
    memory_bytes: int  # usable device memory, as the driver reports it
    memory_bandwidth: int  # bytes per second
    l2_bytes: int
    shared_memory_per_sm: int
    shared_memory_per_block_optin: int

    def target_config(self) -> str:
        """The part as GpuTargetConfigProto text."""
        major, minor = self.compute_capability
        return f"""gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: {self.shared_memory_per_sm}
  threads_per_core_limit: 2048
  core_count: {self.sm_count}
  fpus_per_core: {self.fp32_units_per_sm}
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {self.memory_bandwidth}
  l2_cache_size: {self.l2_bytes}
  clock_rate_ghz: {self.clock_ghz}
  device_memory_size: {self.memory_bytes}
  shared_memory_per_block_optin: {self.shared_memory_per_block_optin}
  cuda_compute_capability {{ major: {major} minor: {minor} }}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 28 patch: 0 }}
runtime_version {{ major: 12 minor: 9 patch: 0 }}
device_description_str: "{self.device_kind}"
"""


GPUS = {
    "h100": Gpu("NVIDIA H100 80GB HBM3", (9, 0), 132, 128, 1.98, 84_942_979_072,
                3_352_320_000_000, 50 * 2**20, 233_472, 232_448),
    "h200": Gpu("NVIDIA H200 141GB HBM3e", (9, 0), 132, 128, 1.98, 151_397_597_184,
                4_800_000_000_000, 50 * 2**20, 233_472, 232_448),
    "a100": Gpu("NVIDIA A100-SXM4-80GB", (8, 0), 108, 64, 1.41, 85_100_068_864,
                2_039_040_000_000, 40 * 2**20, 167_936, 166_912),
}


def is_gpu_topology(name: str) -> bool:
    """Whether `name` names GPU nodes ("h100:8", "h200:2x8", "a100:4") rather than a TPU slice."""
    return GPU_TOPOLOGY.fullmatch(name) is not None and name.split(":")[0] in GPUS


def gpu_devices(name: str) -> list:
    """Compile-only devices of `name`: GPU:[NODESx]GPUS_PER_NODE, e.g. "h100:8" (one node of 8)
    or "h100:2x8" (2 nodes of 8, each node one process, as jax.distributed runs them)."""
    found = GPU_TOPOLOGY.fullmatch(name)
    gpu = GPUS[found["gpu"]]
    nodes, per_node = int(found["nodes"] or 1), int(found["per_node"])
    if not (nodes >= 1 and 1 <= per_node <= 8):
        raise ConfigError(f"--topology={name!r}: a node holds 1 to 8 GPUs; give e.g. "
                          f"{found['gpu']}:8 or {found['gpu']}:2x8")
    # Without this the plugin checks the CUDA libraries against a driver, which is not there.
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
    try:
        import jax_cuda12_plugin  # noqa: F401  (the plugin the topology needs)
    except ImportError:
        raise ConfigError(f"--topology={name!r} compiles for NVIDIA GPUs with jax's CUDA "
                          f"plugin, which is not installed: {INSTALL}") from None
    from jax.experimental import topologies
    return list(topologies.get_topology_desc(platform="cuda", target_config=gpu.target_config(),
                                             topology=f"{nodes}x1x{per_node}").devices)
