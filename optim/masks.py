"""Which parameters get decoupled weight decay."""
import jax
import numpy as np


def weight_decay_mask(params, decay_embeddings: bool):
    """A pytree of bools like `params`: True where weight decay applies.

    Only matrices and higher-rank tensors decay (ndim >= 2), never vectors such as norm scales
    and biases (as in GPT-2 / nanoGPT and Loshchilov & Hutter 2019's practice for LMs).
    Embedding tables, i.e. leaves with a path component containing "embed" (any case: `embed`,
    `embedding`, `unembed`, flax's `Embed_0`), decay only if `decay_embeddings`. Works on any
    nested dict, with or without flax's top-level "params" key, and on abstract leaves
    (jax.ShapeDtypeStruct, tracers).
    """
    def decays(path, leaf) -> bool:
        embedding = "embed" in jax.tree_util.keystr(path, simple=True, separator="/").lower()
        return np.ndim(leaf) >= 2 and (decay_embeddings or not embedding)

    return jax.tree_util.tree_map_with_path(decays, params)
