"""Parameter groups: which parameters are embeddings, hidden weight matrices, belong to a
config-defined group, or get weight decay; and the split of an optimizer into a matrix part and
the rest. Masks are pytrees like the params; they work on any nested dict, with or without
flax's top-level "params" key, and on abstract leaves (jax.ShapeDtypeStruct, tracers)."""
import re

import jax
import numpy as np
import optax

GROUP_KEYS = ("pattern", "lr_multiplier", "weight_decay")


def path_name(path) -> str:
    """A parameter's path as "block_0/attn/query/kernel" (what group patterns are matched
    against; flax's top-level "params" key, if any, included)."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


STACK = "layers"  # the path component of stacked (scanned) layer parameters


def is_stacked(path) -> bool:
    """A stack of per-layer parameters along axis 0: a path component named "layers" (the
    scanned blocks of lm.model, model.scan_layers). Optimizers treat each layer's slice as
    its own tensor."""
    return any(getattr(k, "key", None) == STACK for k in path)


def layer_ndim(path, leaf) -> int:
    """The rank of one layer's tensor: that of the leaf, less the stack axis if stacked."""
    return np.ndim(leaf) - is_stacked(path)


def stacked_mask(params):
    return jax.tree_util.tree_map_with_path(lambda path, _: is_stacked(path), params)


def stack_flags(stacked, tree):
    """A transform's `stacked` argument (None: nothing stacked; a pytree of bools like the
    params, or a callable of them such as stacked_mask) as a pytree of bools shaped like
    `tree`. Where optax.multi_transform has put a MaskedNode in place of another part's
    parameter, the MaskedNode stays."""
    flags = stacked(tree) if callable(stacked) else stacked
    if flags is None:
        return jax.tree.map(lambda _: False, tree)
    structure = jax.tree.structure(flags)
    return structure.unflatten([jax.tree.map(lambda _, f=flag: bool(f), subtree)
                                for flag, subtree in zip(structure.flatten_up_to(flags),
                                                         structure.flatten_up_to(tree))])


def is_embedding(path) -> bool:
    """An embedding table: a path component containing "embed" (any case: `embedding`,
    `unembed`, flax's `Embed_0`)."""
    return "embed" in path_name(path).lower()


def is_matrix(path, leaf) -> bool:
    """A hidden weight matrix, the group matrix optimizers (Muon, SOAP, Shampoo) precondition:
    2-D per layer and not an embedding table. Embeddings, norms and biases go to their
    fallback."""
    return layer_ndim(path, leaf) == 2 and not is_embedding(path)


def matrix_mask(params):
    return jax.tree_util.tree_map_with_path(is_matrix, params)


def matrices_and_rest(matrix_tx: optax.GradientTransformation,
                      rest_tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`matrix_tx` on the hidden weight matrices, `rest_tx` on embeddings, norms and biases:
    how matrix optimizers (SOAP, Shampoo, Muon) are run on an LM, with AdamW as the rest."""
    def labels(params):
        return jax.tree_util.tree_map(lambda m: "matrix" if m else "rest", matrix_mask(params))

    return optax.multi_transform({"matrix": matrix_tx, "rest": rest_tx}, labels)


def layerwise(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` applied to each layer of a stacked parameter on its own (vmapped over axis 0), and
    as is to the other parameters: for transforms whose arithmetic spans a whole tensor
    (Adafactor's factored moments and RMS update clipping). `tx` must not evaluate
    path-dependent masks: under vmap a stacked leaf has one layer's shape."""
    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "stacked" if is_stacked(path) else "flat", params)

    def mapped(fn):  # vmap needs an array: without stacked parameters there is nothing to map
        return lambda tree, *rest: (jax.vmap(fn) if jax.tree.leaves(tree) else fn)(tree, *rest)

    per_layer = optax.GradientTransformation(
        lambda params: mapped(tx.init)(params),
        lambda updates, state, params=None: mapped(tx.update)(updates, state, params))
    return optax.multi_transform({"stacked": per_layer, "flat": tx}, labels)


def check_groups(groups) -> None:
    """`config.optimizer.groups`: name -> {pattern, lr_multiplier, weight_decay}; each field is
    checked here so a typo fails before anything compiles."""
    for name, group in groups.items():
        keys = set(group.keys())
        if keys != set(GROUP_KEYS):
            raise ValueError(f"optimizer.groups.{name} has keys {sorted(keys)}; a group has "
                             f"exactly {', '.join(GROUP_KEYS)}")
        try:
            re.compile(group.pattern)
        except (re.error, TypeError) as err:
            raise ValueError(f"optimizer.groups.{name}.pattern={group.pattern!r} is not a "
                             f"regular expression: {err}") from err
        if not group.lr_multiplier >= 0:
            raise ValueError(f"optimizer.groups.{name}.lr_multiplier={group.lr_multiplier} "
                             "must be >= 0")
        if group.weight_decay not in (None, True, False):
            raise ValueError(f"optimizer.groups.{name}.weight_decay={group.weight_decay!r} must "
                             "be True, False or None (None: the default rule, decay iff ndim "
                             ">= 2)")


def group_of(params, groups, require_every_group: bool = False):
    """A pytree like `params` holding each parameter's group name, or None outside every group.
    A group takes the parameters whose path (`path_name`) matches its pattern (re.search).
    Raises if a parameter matches two groups, and with `require_every_group` if a group
    matches no parameter (a pattern that selects nothing is almost always a typo; inner
    transforms of a multi_transform see only part of the params, so it is off by default)."""
    check_groups(groups)
    compiled = {name: re.compile(group.pattern) for name, group in groups.items()}
    used = set()

    def find(path, leaf):
        name = path_name(path)
        hits = [g for g, pattern in compiled.items() if pattern.search(name)]
        if len(hits) > 1:
            raise ValueError(f"parameter {name} matches optimizer.groups {', '.join(hits)}; "
                             "make their patterns exclusive")
        used.update(hits)
        return hits[0] if hits else None

    labels = jax.tree_util.tree_map_with_path(find, params)
    unused = [g for g in compiled if g not in used]
    if require_every_group and unused:
        names = [path_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
        raise ValueError(f"optimizer.groups.{unused[0]}.pattern={groups[unused[0]].pattern!r} "
                         f"matches no parameter; the parameters are: {', '.join(names)}")
    return labels


def weight_decay_mask(params, groups):
    """True where weight decay applies: a group's `weight_decay` where it is set, otherwise
    matrices and higher-rank tensors (per layer ndim >= 2) but never vectors such as norm
    scales and biases (GPT-2 / nanoGPT practice). The default config's `embeddings` group turns
    decay off on embedding tables."""
    labels = group_of(params, groups)

    def decays(path, leaf, label) -> bool:
        if label is not None and groups[label].weight_decay is not None:
            return bool(groups[label].weight_decay)
        return layer_ndim(path, leaf) >= 2

    return jax.tree_util.tree_map_with_path(decays, params, labels, is_leaf=lambda x: x is None)


def lr_multipliers(params, groups, mup_width_mult: float | None = None):
    """Each parameter's learning-rate multiplier: its group's `lr_multiplier` (1 outside every
    group), times 1/m on hidden matrices under muP with width multiplier m (Yang et al. 2022,
    Tensor Programs V, Table 3: Adam-type updates of hidden weights scale as 1/fan_in)."""
    labels = group_of(params, groups)
    mup = 1.0 / mup_width_mult if mup_width_mult else 1.0

    def multiplier(path, leaf, label) -> float:
        group = groups[label].lr_multiplier if label is not None else 1.0
        return float(group) * (mup if is_matrix(path, leaf) else 1.0)

    return jax.tree_util.tree_map_with_path(multiplier, params, labels,
                                            is_leaf=lambda x: x is None)


def scale_by_multipliers(multipliers_fn) -> optax.GradientTransformation:
    """Multiplies each update by its parameter's constant multiplier, `multipliers_fn(params)`
    (a pytree of Python floats, so nothing is stored: the state is empty). Applied after an
    optimizer whose update is proportional to its lr, this is a per-parameter lr (and, as in
    PyTorch's param groups, scales the decoupled weight decay with it)."""
    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        multipliers = multipliers_fn(updates)
        return jax.tree.map(lambda u, k: u if k == 1.0 else u * k, updates, multipliers), state

    return optax.GradientTransformation(init_fn, update_fn)
