"""The scanned model's parameter layout (model.scan_layers) for tests: the unrolled model's
block_0, block_1, ... stacked along a leading axis under `layers` (optim.masks.STACK)."""
import jax
import jax.numpy as jnp

from optim.masks import STACK


def stack_blocks(tree: dict) -> dict:
    """`tree` (parameters or gradients) with its blocks block_0 ... block_{L-1} stacked into
    one `layers` subtree, every other key as it is."""
    count = sum(k.startswith("block_") for k in tree)
    blocks = [tree[f"block_{i}"] for i in range(count)]
    rest = {k: v for k, v in tree.items() if not k.startswith("block_")}
    return {**rest, STACK: jax.tree.map(lambda *x: jnp.stack(x), *blocks)}
