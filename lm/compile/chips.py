"""Accelerator chips: HBM per chip, dense bf16 peak and HBM bandwidth, for memory verdicts, MFU
and roofline estimates.

Datasheet figures (the H100 / H200 SXM parts; TPU per chip). Keys are the prefixes of
`jax.Device.device_kind` (a v5p reports "TPU v5", a v5e "TPU v5 lite"; the longest match wins).
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    hbm_bytes: int
    bf16_flops_per_s: float
    memory_bytes_per_s: float = 0.0  # HBM bandwidth (0: not recorded)


CHIPS = {
    "TPU v4": Chip("TPU v4", 32 * 2**30, 275e12, 1.2e12),
    "TPU v5 lite": Chip("TPU v5e", 16 * 2**30, 197e12, 0.82e12),
    "TPU v5": Chip("TPU v5p", 95 * 2**30, 459e12, 2.765e12),
    "TPU v6 lite": Chip("TPU v6e", 32 * 2**30, 918e12, 1.64e12),
    "NVIDIA A100": Chip("A100", 80 * 2**30, 312e12, 2.039e12),
    "NVIDIA H100": Chip("H100", 80 * 2**30, 989e12, 3.35e12),
    "NVIDIA H200": Chip("H200", 141 * 10**9, 989e12, 4.8e12),
}


def chip_of(device_kind: str) -> Chip | None:
    """The chip whose key is the longest prefix of `device_kind`, or None (a CPU)."""
    matches = [key for key in CHIPS if device_kind.startswith(key)]
    return CHIPS[max(matches, key=len)] if matches else None
