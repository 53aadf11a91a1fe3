"""The sharded, jitted functions of a run on a mesh: initial state, train step and eval step.

Shared by the trainer, the benchmarks and the tests, so that all of them run the same program.
Parameters are born sharded (`jax.jit(init, out_shardings=...)`), the train step keeps the
state's sharding (`in_shardings` = `out_shardings`, donated), batches arrive split over the
`batch` mesh axes and metrics leave replicated.
"""
import functools
from typing import Callable, NamedTuple

import jax

import optim
from core import cli, user_modules
from data.tokenizer import ByteTokenizer
from lm.errors import ConfigError
from lm.model import (
    ModelConfig,
    Transformer,
    init_params,
    mup_width_mult,
    param_logical_axes,
)
from lm.model.loss import chunk_positions
from lm.train import sharding
from lm.train.step import TrainState, init_state, make_eval_step, make_train_step


class Runtime(NamedTuple):
    sharder: sharding.Sharder
    state_shardings: TrainState
    abstract_state: TrainState  # ShapeDtypeStructs that carry their target shardings
    init_state: Callable[[], TrainState]  # () -> a fresh, sharded state
    train_step: Callable  # (state, windows) -> (state, metrics, {})
    train_step_with_stats: Callable  # the same, with per-layer RMS statistics (compiled on use)
    eval_step: Callable  # (params, windows) -> summed cross-entropy


def build_optimizer(config) -> optim.Optimizer:
    """The run's optimizer, checked against the model's parameter shapes before any data is
    prepared or anything compiles (ConfigError otherwise), after the run's own modules
    (config.train.imports: an optimizer registered outside optiscale) are imported, as every
    process that builds the run (a sweep's workers, a resume, lm.sample) must. Which parameters
    exist does not depend on the vocabulary, so the byte tokenizer's size stands in for it."""
    try:
        user_modules.import_modules(config.train.get("imports", ""))
    except cli.UsageError as err:
        raise ConfigError(str(err)) from err
    model = Transformer(ModelConfig.from_config(config.model, ByteTokenizer.vocab_size,
                                                "float32"))
    params = jax.eval_shape(functools.partial(init_params, model, jax.random.PRNGKey(0), 1))
    try:
        return optim.build_from_config(config, params, mup_width_mult(config.model))
    except ValueError as err:
        raise ConfigError(str(err)) from err


def loss_chunk(config, model_cfg: ModelConfig) -> int:
    """Sequence positions per loss chunk (0: none) for config.model.loss_chunk; a chunked loss
    computes the head outside the model, which an MX-quantized lm_head cannot be."""
    chunk = chunk_positions(config.model.loss_chunk, model_cfg.vocab_size)
    if chunk and model_cfg.mx_for("lm_head") is not None:
        if config.model.loss_chunk == -1:
            return 0  # automatic chunking yields to the MX head
        raise ConfigError(f"model.loss_chunk={config.model.loss_chunk} cannot be combined with "
                          "an MX-quantized lm_head; set model.loss_chunk=0 or leave lm_head out "
                          "of precision.mx_layers")
    return chunk


def build_for_run(config, model_cfg: ModelConfig, tx, sharder: sharding.Sharder) -> Runtime:
    """`build` with the seed, sequence length, microbatches and loss settings of run config
    `config`: the runtime lm.train trains with and lm.compile compiles."""
    return build(model_cfg, tx, sharder, seed=config.train.seed, seq_len=config.data.seq_len,
                 microbatches=config.train.microbatches, z_loss=config.model.z_loss,
                 loss_chunk=loss_chunk(config, model_cfg))


def build(model_cfg: ModelConfig, tx, sharder: sharding.Sharder, *, seed: int, seq_len: int,
          microbatches: int = 1, z_loss: float = 0.0, loss_chunk: int = 0) -> Runtime:
    """Checks that the mesh divides the model (ConfigError otherwise; nothing is compiled
    before) and returns the run's jitted functions."""
    model = Transformer(model_cfg)

    def make_state():
        return init_state(init_params(model, jax.random.PRNGKey(seed), seq_len), tx)

    abstract = jax.eval_shape(make_state)
    logical = param_logical_axes(model)
    sharding.check_model(model_cfg, logical, abstract.params, sharder.rules, sharder.sizes)
    shardings = sharder.state_shardings(abstract, logical)
    abstract = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)

    def jitted_train_step(layer_stats: bool):
        return sharder.jit(make_train_step(model, tx, microbatches, z_loss, layer_stats,
                                           loss_chunk),
                           in_shardings=(shardings, sharder.batch),
                           out_shardings=(shardings, sharder.replicated, sharder.replicated),
                           donate_argnums=0)

    eval_step = sharder.jit(make_eval_step(model, loss_chunk),
                            in_shardings=(shardings.params, sharder.batch),
                            out_shardings=sharder.replicated)
    return Runtime(sharder, shardings, abstract, jax.jit(make_state, out_shardings=shardings),
                   jitted_train_step(False), jitted_train_step(True), eval_step)


def per_device_bytes(tree) -> dict:
    """Bytes of `tree`'s arrays in total (one copy each) and on the most loaded device."""
    total, per_device = 0, {}
    for x in jax.tree_util.tree_leaves(tree):
        total += x.nbytes
        for shard in x.addressable_shards:
            per_device[shard.device] = per_device.get(shard.device, 0) + shard.data.nbytes
    return {"total_bytes": total, "max_device_bytes": max(per_device.values(), default=0)}
