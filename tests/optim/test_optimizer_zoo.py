"""Every registered optimizer on the quickstart model: it trains with a decreasing loss (slow),
and its state holds the floats the memory analysis predicts. The contract each keeps on a tiny
tree (shapes, finiteness, the weight-decay mask, scanned layers, shardings, an Orbax round
trip) is tests/optim/test_contract.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim
from benchmarks.optimizers import (
    parse_variant,
    predicted_state_floats,
    short_run_config,
)
from data import prepare, sampling
from data.tokenizer import ByteTokenizer
from lm.model import ModelConfig, Transformer, init_params
from lm.train.timing import build

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
    rt, state, _ = build(config, SEQ_LEN, ByteTokenizer.vocab_size)
    losses = []
    for w in windows[:steps]:
        state, metrics, _ = rt.train_step(state, jax.device_put(w, rt.sharder.batch))
        losses.append(float(metrics["train/loss"]))
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("name", optim.registered_optimizers() + (
    "soap/block_size=48/precondition_frequency=4", "sophia/estimator='hutchinson'"))
def test_trains_the_quickstart_model_with_decreasing_loss(name, windows):
    losses = train(name, windows, STEPS)
    assert np.all(np.isfinite(losses)), losses
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses


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
    predicted = predicted_state_floats(name, config.optimizer[name], params, config.model)
    assert abs(floats - predicted) <= 2 * len(jax.tree.leaves(params)) + 4, (floats, predicted)
