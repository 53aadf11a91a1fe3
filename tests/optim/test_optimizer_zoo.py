"""Every registered optimizer: trains the quickstart model with a decreasing loss, and its
state survives an Orbax save/restore exactly."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import optim
from benchmarks.optimizers import (
    parse_variant,
    predicted_state_floats,
    short_run_config,
)
from benchmarks.train_step import build
from data import prepare, sampling
from data.tokenizer import ByteTokenizer
from lm.model import ModelConfig, Transformer, init_params
from lm.train.checkpoint import Checkpointer

SEQ_LEN, BATCH, STEPS = 64, 8, 30


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    corpus = prepare.ensure_prepared(str(tmp_path_factory.mktemp("data")), "en_docs_sample")
    return [sampling.train_batch(corpus.train, seed=0, step=s, process_index=0,
                                 batch_size=BATCH, seq_len=SEQ_LEN) for s in range(STEPS)]


def train(spec, windows, steps):
    """Trains the quickstart model with optimizer variant `spec` (name[/key=value...])."""
    name, overrides = parse_variant(spec)
    config = short_run_config(name, STEPS)
    config.optimizer[name].update(overrides)
    config.train.batch_size = windows[0].shape[0]
    rt, state, opt = build(config, SEQ_LEN, ByteTokenizer.vocab_size)
    losses = []
    for w in windows[:steps]:
        state, metrics, _ = rt.train_step(state, jax.device_put(w, rt.sharder.batch))
        losses.append(float(metrics["train/loss"]))
    return state, losses, opt


@pytest.mark.slow
@pytest.mark.parametrize("name", optim.registered_optimizers() + (
    "soap/block_size=48/precondition_frequency=4", "sophia/estimator='hutchinson'"))
def test_trains_the_quickstart_model_with_decreasing_loss(name, windows):
    _, losses, _ = train(name, windows, STEPS)
    assert np.all(np.isfinite(losses)), losses
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses


@pytest.mark.parametrize("name", optim.registered_optimizers())
def test_state_survives_orbax_save_and_restore_exactly(name, windows, tmp_path):
    state, _, opt = train(name, windows, 3)
    checkpointer = Checkpointer(str(tmp_path), max_to_keep=1)
    checkpointer.save(3, state, {"step": 3})
    checkpointer.wait()
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    step, restored, _ = checkpointer.restore_latest(abstract)
    checkpointer.close()
    assert step == 3
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    flat, flat_restored = ocp.tree.to_flat_dict(state), ocp.tree.to_flat_dict(restored)
    for key in flat:
        np.testing.assert_array_equal(np.asarray(flat[key]), np.asarray(flat_restored[key]),
                                      err_msg=f"{name}: {key}")
    # evaluation parameters are defined for every optimizer (schedule-free: the x iterate)
    eval_params = opt.eval_params(restored.opt_state, restored.params)
    assert jax.tree.structure(eval_params) == jax.tree.structure(state.params)


def hidden_matrices_after(name, weight_decay, group_decay, steps=4):
    """The hidden matrices of a small model after `steps` updates of optimizer `name` (on fixed
    random gradients) at its weight_decay set to `weight_decay`, with the matrices in a group
    whose weight_decay is `group_decay`."""
    config = short_run_config(name, STEPS)
    config.model.update(dict(d_model=32, n_layers=2, n_heads=2))
    config.schedule.update(dict(name="constant", warmup_steps=0))
    config.optimizer[name].weight_decay = weight_decay
    config.optimizer.groups.hidden = dict(pattern=r"block_\d+/.*kernel", lr_multiplier=1.0,
                                          weight_decay=group_decay)
    model = Transformer(ModelConfig.from_config(config.model, 64, "float32"))
    params = init_params(model, jax.random.PRNGKey(0), 8)
    opt = optim.build_from_config(config, params)
    rng = np.random.default_rng(0)
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype) * 0.1,
                          params) for _ in range(steps)]

    def square_sum(p):  # the loss functions that Sophia's curvature estimate evaluates
        return sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(p))

    update = jax.jit(lambda g, s, p: opt.tx.update(
        g, s, p, obj_fn=square_sum, sampled_loss_fn=lambda p, rng: (square_sum(p), 1)))
    state = opt.tx.init(params)
    for g in grads:
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
    return {k: np.asarray(v) for k, v in ocp.tree.to_flat_dict(params).items()
            if k[0].startswith("block_") and k[-1] == "kernel"}


@pytest.mark.parametrize("name", optim.registered_optimizers())
def test_a_group_without_weight_decay_gets_none(name):
    """optimizer.groups.X.weight_decay=False: X's parameters train exactly as with the
    optimizer's weight decay at 0, under every optimizer (matrix optimizers included), while
    the default rule decays them."""
    without = hidden_matrices_after(name, 0.5, False)
    zero = hidden_matrices_after(name, 0.0, None)
    decayed = hidden_matrices_after(name, 0.5, None)
    for key in zero:
        np.testing.assert_allclose(without[key], zero[key], rtol=1e-6, atol=1e-9,
                                   err_msg=f"{name}: {key}")
    assert any(not np.allclose(decayed[key], zero[key], rtol=1e-5, atol=0) for key in zero), \
        f"{name}: weight decay 0.5 changed no hidden matrix"


@pytest.mark.parametrize("spec", optim.registered_optimizers() + (
    "soap/block_size=48", "soap/max_precond_dim=100", "shampoo/graft='sgd'",
    "adalayer/star=False", "adafactor/momentum=0.9", "sophia/estimator='hutchinson'"))
def test_state_size_is_what_the_memory_analysis_predicts(spec):
    """Optimizer-state floats of a d=128 model (matrices 128x128, 128x512; BPE vocab 300)
    equal each method's analytic count (benchmarks.optimizers.predicted_state_floats), up to
    optax's size-1 placeholders (Adafactor keeps up to 2 per parameter) and scalars."""
    name, overrides = parse_variant(spec)
    config = short_run_config(name, STEPS)
    config.optimizer[name].update(overrides)
    model = Transformer(ModelConfig.from_config(config.model, 300, "float32"))
    params = jax.eval_shape(lambda: init_params(model, jax.random.PRNGKey(0), SEQ_LEN))
    opt = optim.build_from_config(config, params)
    state = jax.eval_shape(opt.tx.init, params)
    floats = sum(x.size for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating))
    predicted = predicted_state_floats(name, config.optimizer[name], params)
    assert abs(floats - predicted) <= 2 * len(jax.tree.leaves(params)) + 4, (floats, predicted)
