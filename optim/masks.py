"""Parameter groups: which parameters are embeddings, hidden weight matrices, or get weight
decay, and the split of an optimizer into a matrix part and the rest. Masks are pytrees of bools
like the params; they work on any nested dict, with or without flax's top-level "params" key,
and on abstract leaves (jax.ShapeDtypeStruct, tracers)."""
import jax
import numpy as np
import optax


def is_embedding(path) -> bool:
    """An embedding table: a path component containing "embed" (any case: `embedding`,
    `unembed`, flax's `Embed_0`)."""
    return "embed" in jax.tree_util.keystr(path, simple=True, separator="/").lower()


def is_matrix(path, leaf) -> bool:
    """A hidden weight matrix, the group matrix optimizers (Muon, SOAP, Shampoo) precondition:
    2-D and not an embedding table. Embeddings, norms and biases go to their fallback."""
    return np.ndim(leaf) == 2 and not is_embedding(path)


def matrix_mask(params):
    return jax.tree_util.tree_map_with_path(is_matrix, params)


def matrices_and_rest(matrix_tx: optax.GradientTransformation,
                      rest_tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`matrix_tx` on the hidden weight matrices, `rest_tx` on embeddings, norms and biases:
    how matrix optimizers (SOAP, Shampoo, Muon) are run on an LM, with AdamW as the rest."""
    def labels(params):
        return jax.tree_util.tree_map(lambda m: "matrix" if m else "rest", matrix_mask(params))

    return optax.multi_transform({"matrix": matrix_tx, "rest": rest_tx}, labels)


def weight_decay_mask(params, decay_embeddings: bool):
    """True where weight decay applies: matrices and higher-rank tensors (ndim >= 2), never
    vectors such as norm scales and biases (GPT-2 / nanoGPT practice); embedding tables only if
    `decay_embeddings`."""
    def decays(path, leaf) -> bool:
        return np.ndim(leaf) >= 2 and (decay_embeddings or not is_embedding(path))

    return jax.tree_util.tree_map_with_path(decays, params)
