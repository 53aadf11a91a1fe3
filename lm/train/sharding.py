"""Device mesh, logical axis rules, and the shardings of the train state and batches.

One config runs on 1 CPU, 8 devices, a GPU node or a TPU pod: only `config.mesh` changes.

The mesh has three axes (Xu et al. 2021, GSPMD; the names of MaxText / levanter):
  data    pure data parallelism: parameters and optimizer state replicated, batch split;
  fsdp    fully sharded data parallelism (ZeRO-3, Rajbhandari et al. 2020): the batch is split
          and so are parameters and optimizer state, gathered by XLA where a matmul needs them;
  tensor  tensor (Megatron, Shoeybi et al. 2019) parallelism: attention heads, MLP hidden units
          and the vocabulary split, activations of those dims too.

Every parameter and the main activations carry logical axis names (`batch`, `seq`, `embed`,
`mlp`, `heads`, `kv_heads`, `head_dim`, `vocab`, `norm`), and `config.mesh.rules` maps each name
to mesh axes, so DP / FSDP / TP and their mixes are config changes. A name claims its mesh axes
in the order of LOGICAL_AXES and an axis already used by an earlier dim of the same array is
skipped (flax's rule semantics): activations (batch, seq, embed) put fsdp on the batch, parameters
(vocab, embed) put it on the embedding dim.

Optimizer state follows its parameter: a state leaf shaped like its parameter gets the
parameter's sharding; factor matrices (SOAP's and Shampoo's statistics and eigenbases) are
declared by their state class (`factor_param_axis`: which parameter axis a factor belongs to;
square factors, or Dion's (d, r) ones whose d rows are that axis) and have their rows split over
the mesh axes of their parameter, so they take 1/n of the memory
on n devices like everything else (XLA gathers a factor where an eigendecomposition needs it
whole); anything else (step counts, per-tensor scalars, Adafactor's factored moments) is
replicated.
"""
import dataclasses
import math

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from lm.errors import ConfigError
from lm.train.settings import MESH_AXES, RULES
from lm.train.step import TrainState
from optim.masks import is_stacked

# Logical axis names in rule priority order (see the module docstring): mesh.rules' fields.
LOGICAL_AXES = tuple(RULES.fields)


def mesh_shape(mesh_cfg, device_count: int) -> dict:
    """{"data": n, "fsdp": n, "tensor": n} from config; one axis may be -1 ("the rest")."""
    sizes = {axis: int(mesh_cfg[axis]) for axis in MESH_AXES}
    auto = [axis for axis, n in sizes.items() if n == -1]
    bad = [f"mesh.{axis}={n}" for axis, n in sizes.items() if n != -1 and n < 1]
    if bad or len(auto) > 1:
        raise ConfigError(f"{', '.join(bad) or 'mesh.' + ' and mesh.'.join(auto) + ' = -1'}: "
                          "each mesh axis needs a positive size, and at most one may be -1 "
                          "(the devices left over)")
    fixed = math.prod(n for n in sizes.values() if n != -1)
    if auto:
        if device_count % fixed:
            raise ConfigError(
                f"mesh {_describe(sizes)} cannot fill {device_count} devices: the fixed axes "
                f"multiply to {fixed}, which does not divide the device count; pick sizes "
                f"whose product divides {device_count}")
        sizes[auto[0]] = device_count // fixed
    if math.prod(sizes.values()) != device_count:
        raise ConfigError(
            f"mesh {_describe(sizes)} has {math.prod(sizes.values())} devices but "
            f"{device_count} are visible; make mesh.data * mesh.fsdp * mesh.tensor equal "
            f"{device_count}, or set one of them to -1 to take the rest")
    return sizes


def _describe(sizes: dict) -> str:
    return ",".join(f"{axis}={n}" for axis, n in sizes.items())


def make_mesh(mesh_cfg, devices=None) -> Mesh:
    """The (data, fsdp, tensor) mesh over `devices` (default: all devices of all processes), laid
    out along the chips' interconnect (mesh_utils.create_device_mesh, which may split a
    physical axis: jax.make_mesh refuses (2, 16, 2) on a v5p 4x4x4). With mesh.slices > 1 the
    data axis spans that many slices (multi-slice TPU runs): data parallelism over the
    data-center network between slices, everything else within each slice's ICI
    (create_hybrid_device_mesh, MaxText's dcn_data_parallelism)."""
    devices = jax.devices() if devices is None else list(devices)
    sizes = mesh_shape(mesh_cfg, len(devices))
    shape = tuple(sizes[axis] for axis in MESH_AXES)
    slices = int(mesh_cfg.get("slices", 1))
    if slices < 1 or sizes["data"] % slices:
        raise ConfigError(f"mesh.slices={slices} must be >= 1 and divide the data axis "
                          f"({_describe(sizes)}): each slice holds data / slices replicas; "
                          "set mesh.data to a multiple of mesh.slices")
    if slices > 1:
        grid = mesh_utils.create_hybrid_device_mesh(
            (sizes["data"] // slices, sizes["fsdp"], sizes["tensor"]), (slices, 1, 1), devices,
            allow_split_physical_axes=True)
    elif devices[0].platform in ("tpu", "gpu"):
        grid = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
    else:
        grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def axis_rules(rules_cfg) -> tuple:
    """config.mesh.rules ({"embed": "fsdp", "batch": "data,fsdp", "seq": "", ...}) as flax
    logical axis rules, in LOGICAL_AXES priority order."""
    unknown = sorted(set(rules_cfg) - set(LOGICAL_AXES))
    if unknown:
        raise ConfigError(f"mesh.rules has unknown logical axes {unknown}; the logical axes are "
                          f"{', '.join(LOGICAL_AXES)}")
    rules = []
    for name in LOGICAL_AXES:
        axes = tuple(a.strip() for a in rules_cfg.get(name, "").split(",") if a.strip())
        bad = [a for a in axes if a not in MESH_AXES]
        if bad:
            raise ConfigError(f"mesh.rules.{name}={rules_cfg[name]!r} names {bad}, which are not "
                              f"mesh axes; use a comma-separated subset of {MESH_AXES}, or '' "
                              "for unsharded")
        rules.append((name, axes[0] if len(axes) == 1 else (axes or None)))
    return tuple(rules)


def mesh_axes(entry) -> tuple:
    """The mesh axes of one PartitionSpec entry (None, an axis name or a tuple of them)."""
    return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)


def spec_size(spec: PartitionSpec, sizes: dict) -> list[int]:
    """Per array dim, how many shards `spec` cuts it into on a mesh of `sizes`."""
    return [math.prod(sizes[n] for n in mesh_axes(entry)) for entry in spec]


def check_divisible(logical_tree, shapes_tree, rules, sizes: dict):
    """Raises ConfigError naming every array dim that the mesh does not divide evenly."""
    problems = []
    flat_specs = jax.tree_util.tree_leaves_with_path(
        logical_tree, is_leaf=lambda x: isinstance(x, PartitionSpec))
    flat_shapes = jax.tree_util.tree_leaves(shapes_tree)
    for (path, logical), leaf in zip(flat_specs, flat_shapes):
        spec = nn.logical_to_mesh_axes(tuple(logical), rules)
        for dim, (name, shards, size) in enumerate(zip(logical, spec_size(spec, sizes),
                                                       leaf.shape)):
            if size % shards:
                kind, *where = (str(k.key) for k in path)
                problems.append(f"{kind} {'/'.join(where)} dim {dim} ({name}, size {size}) "
                                f"over mesh axes {','.join(mesh_axes(spec[dim]))} "
                                f"({shards} shards)")
    if problems:
        raise ConfigError(
            "the mesh does not divide these dims evenly: " + "; ".join(problems) + ". Choose "
            "mesh sizes that divide them (e.g. a tensor size dividing model.n_heads, "
            "model.n_kv_heads and model.d_ff; pad model.vocab_size to a multiple), or map the "
            "logical axis to no mesh axis, e.g. --config.mesh.rules.heads=''")


def check_batches(config, rules, sizes: dict, process_count: int) -> None:
    """Every (micro)batch splits evenly over processes and over the mesh axes of `batch`."""
    shards = spec_size(nn.logical_to_mesh_axes(("batch",), rules), sizes)[0]
    micro = config.train.batch_size // config.train.microbatches
    for what, rows in ((f"the microbatch of {micro} sequences (train.batch_size / "
                        "train.microbatches)", micro),
                       (f"data.eval_batch_size={config.data.eval_batch_size}",
                        config.data.eval_batch_size)):
        if rows % shards:
            raise ConfigError(f"{what} does not split over the {shards} batch shards of the "
                              f"mesh (mesh.rules.batch={config.mesh.rules.batch!r} on "
                              f"{_describe(sizes)}); make it a multiple of {shards}")
        if rows % process_count:
            raise ConfigError(f"{what} does not split over {process_count} processes; make it "
                              f"a multiple of {process_count}")


def check_model(model_cfg, logical_specs, param_shapes, rules, sizes: dict) -> None:
    """Every parameter dim, and the head counts of the attention activations, split evenly
    over the mesh axes their logical names map to (raises ConfigError naming each one)."""
    heads = {"attention heads (model.n_heads)": ("heads", model_cfg.n_heads),
             "kv heads (model.n_kv_heads)": ("kv_heads", model_cfg.n_kv_heads)}
    check_divisible(
        {"parameter": logical_specs,
         "activation": {k: PartitionSpec(axis) for k, (axis, _) in heads.items()}},
        {"parameter": param_shapes,
         "activation": {k: jax.ShapeDtypeStruct((n,), np.int32) for k, (_, n) in heads.items()}},
        rules, sizes)


@dataclasses.dataclass(frozen=True)
class Sharder:
    """A mesh with its logical axis rules: shardings for arrays named by logical axes, and the
    context in which model code is traced so its activation constraints apply."""
    mesh: Mesh
    rules: tuple

    @property
    def sizes(self) -> dict:
        return dict(self.mesh.shape)

    def named(self, *logical) -> NamedSharding:
        """The sharding of an array whose dims have these logical names (None: unnamed)."""
        return NamedSharding(self.mesh, nn.logical_to_mesh_axes(logical, self.rules))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def batch(self) -> NamedSharding:
        """Sharding of a (batch, seq_len + 1) token batch."""
        return self.named("batch", None)

    def describe(self) -> str:
        return _describe(self.sizes)

    def state_shardings(self, abstract_state: TrainState, logical_specs) -> TrainState:
        """Shardings of a train state: parameters by their logical axes (a tree of logical
        PartitionSpecs, lm.model.param_logical_axes), optimizer state following them."""
        params = nn.logical_to_mesh_sharding(logical_specs, self.mesh, self.rules)
        return TrainState(step=self.replicated, params=params, opt_state=opt_state_shardings(
            abstract_state.opt_state, abstract_state.params, params, self.sizes))

    def jit(self, fn, **jit_kwargs) -> "MeshJit":
        """jax.jit of fn, traced with this mesh and rules active: the model's
        `nn.with_logical_constraint`s then shard its activations (elsewhere they are no-ops)."""
        return MeshJit(jax.jit(fn, **jit_kwargs), self)


@dataclasses.dataclass(frozen=True)
class MeshJit:
    """A jitted function called, or lowered ahead of time (lm.compile), under its Sharder's mesh
    and logical axis rules."""
    jitted: object
    sharder: Sharder

    def __call__(self, *args):
        with jax.set_mesh(self.sharder.mesh), nn.logical_axis_rules(self.sharder.rules):
            return self.jitted(*args)

    def lower(self, *args):
        with jax.set_mesh(self.sharder.mesh), nn.logical_axis_rules(self.sharder.rules):
            return self.jitted.lower(*args)


def from_config(config, devices=None) -> Sharder:
    """The run's mesh and rules, with the mesh and batch split checked (before any work)."""
    rules = axis_rules(config.mesh.rules)
    mesh = make_mesh(config.mesh, devices)
    check_batches(config, rules, dict(mesh.shape), jax.process_count())
    return Sharder(mesh, rules)


def opt_state_shardings(opt_state, params, param_shardings, sizes: dict):
    """NamedShardings for every leaf of `opt_state` (see the module docstring for the policy)."""
    by_path = {}
    for (path, p), sharding in zip(jax.tree_util.tree_leaves_with_path(params),
                                   jax.tree_util.tree_leaves(param_shardings)):
        by_path[_dict_keys(path)] = (p.shape, sharding, int(is_stacked(path)))
    mesh = jax.tree_util.tree_leaves(param_shardings)[0].mesh
    replicated = NamedSharding(mesh, PartitionSpec())

    def owner(path):
        """(param shape, param sharding, index path after the param) of a state leaf, or None."""
        for start in range(len(path)):
            for stop in range(len(path), start, -1):
                keys = _dict_keys(path[start:stop])
                if keys is not None and keys in by_path:
                    index = tuple(getattr(k, "idx", None) for k in path[stop:])
                    return (*by_path[keys], index)
        return None

    def leaf_sharding(path, leaf, declared=None):
        found = owner(path)
        if found is None or not getattr(leaf, "ndim", 0):
            return replicated
        shape, sharding, stack_axes, index = found
        if tuple(leaf.shape) == tuple(shape) and not index:
            return sharding
        if declared is not None and leaf.ndim >= 2:
            axis = declared(index)  # an axis of one layer's tensor
            axis = None if axis is None else axis + stack_axes
            # A factor's rows belong to that axis: a (d, d) factor (of a block, or a whole
            # axis), or a (d, r) one whose d rows are the axis (Dion's low-rank Q).
            if axis is not None and axis < len(shape) and leaf.shape[-2] > 0 and (
                    leaf.shape[-1] == leaf.shape[-2] or leaf.shape[-2] == shape[axis]):
                spec = [None] * leaf.ndim
                spec[-2] = _factor_rows(sharding.spec, axis, leaf.shape[-2], sizes)
                return NamedSharding(mesh, PartitionSpec(*spec))
        return replicated

    def node_shardings(path, node):
        if not hasattr(type(node), "factor_param_axis"):
            return leaf_sharding(path, node)
        fields = {}
        for name, value in node._asdict().items():
            def declared(index, name=name):
                return type(node).factor_param_axis(name, index)
            fields[name] = jax.tree_util.tree_map_with_path(
                lambda sub, leaf, name=name, declared=declared: leaf_sharding(
                    (*path, jax.tree_util.GetAttrKey(name), *sub), leaf, declared), value)
        return type(node)(**fields)

    return jax.tree_util.tree_map_with_path(
        node_shardings, opt_state, is_leaf=lambda x: hasattr(type(x), "factor_param_axis"))


def _factor_rows(param_spec, axis: int, rows: int, sizes: dict):
    """Mesh axes for the rows of a (rows, rows) factor of parameter axis `axis`: all the mesh
    axes the parameter is split over (that axis's first), so the factors are split as finely
    as the parameter; else that axis's own; else None (replicated) if neither divides rows."""
    entries = list(param_spec) + [None] * (axis + 1 - len(param_spec))
    own = mesh_axes(entries[axis])
    every = own + tuple(n for i, e in enumerate(entries) if i != axis for n in mesh_axes(e))
    for candidate in (every, own):
        if candidate and rows % math.prod(sizes[n] for n in candidate) == 0:
            return candidate[0] if len(candidate) == 1 else candidate
    return None


def _dict_keys(path):
    """The keys of a run of dict keys, or None if the path holds another kind of key."""
    if not all(isinstance(k, jax.tree_util.DictKey) for k in path):
        return None
    return tuple(k.key for k in path)
