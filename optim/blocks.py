"""Block partitioning of tensors, for block-diagonal preconditioners (levanter's blocked SOAP).

Every dimension longer than `block_size` splits into full blocks of block_size plus, when the
size is not a multiple, one shorter block; blocks of equal shape form a `Region`, so a tensor has
at most 2^ndim regions, each a (blocks, *block) stack that a preconditioner maps over with vmap.
Without block_size a tensor is one region of one block.
"""
import itertools
import math
from typing import NamedTuple

import jax.numpy as jnp


class Region(NamedTuple):
    """A box of equal blocks inside the preconditioned shape: per dim, where it starts, how many
    blocks it holds and the block length."""
    starts: tuple
    counts: tuple
    block: tuple

    @property
    def box(self) -> tuple:
        """The region's index into the preconditioned shape."""
        return tuple(slice(s, s + c * b) for s, c, b in zip(self.starts, self.counts, self.block))


def regions(shape, block_size):
    """The blocks of `shape`: each dim longer than block_size splits into full blocks of
    block_size plus, if the size is not a multiple, one shorter block; so there are at most
    2^ndim regions of equal blocks. Without block_size, one region of one block (the tensor)."""
    per_dim = []
    for size in shape:
        if not block_size or size <= block_size:
            per_dim.append([(0, 1, size)])
        else:
            full, rest = divmod(size, block_size)
            per_dim.append([(0, full, block_size)] + ([(full * block_size, 1, rest)] if rest
                                                      else []))
    return [Region(*map(tuple, zip(*combo))) if combo else Region((), (), ())
            for combo in itertools.product(*per_dim)]


def to_blocks(x, region):
    """x's entries in `region` as a (blocks, *block) stack, blocks in row-major order."""
    n = len(region.block)
    x = x[region.box]
    x = x.reshape([v for c, b in zip(region.counts, region.block) for v in (c, b)])
    x = x.transpose(list(range(0, 2 * n, 2)) + list(range(1, 2 * n, 2)))
    return x.reshape((math.prod(region.counts),) + region.block)


def from_blocks(blocks, region):
    """The inverse of to_blocks: the (blocks, *block) stack as the region's box."""
    n = len(region.block)
    x = blocks.reshape(region.counts + region.block)
    x = x.transpose([i for d in range(n) for i in (d, n + d)])
    return x.reshape([c * b for c, b in zip(region.counts, region.block)])


def assemble(pieces, regions, shape, dtype):
    """The full array from each region's block stack (a lone region is the whole array)."""
    if len(regions) == 1:
        return from_blocks(pieces[0], regions[0])
    x = jnp.zeros(shape, dtype)
    for blocks, region in zip(pieces, regions):
        x = x.at[region.box].set(from_blocks(blocks, region))
    return x
