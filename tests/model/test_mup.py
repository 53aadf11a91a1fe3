"""muP: the coordinate check, initialisation and per-layer learning rates."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim
from configs import base
from lm.model import ModelConfig, Transformer, init_params
from lm.train.coord_check import coordinate_check, width_exponent


@pytest.mark.slow
def test_coordinate_check_is_flat_under_mup_and_grows_under_standard():
    widths = (64, 128, 256, 512)
    mup = coordinate_check(True, widths=widths, steps=3)
    standard = coordinate_check(False, widths=widths, steps=3)
    for key in ("block_0", "block_1", "logits"):
        assert abs(width_exponent(mup, key)) < 0.15, (key, width_exponent(mup, key))
    assert width_exponent(standard, "block_0") > 1.0 and width_exponent(standard, "block_1") > 1.0
    # at initialisation both parameterizations are width-independent
    assert abs(width_exponent(mup, "block_1", step=0)) < 0.15


def mup_config(width, base_width=64, **overrides):
    model = base.get_config().model
    model.update(dict(d_model=width, n_heads=width // 32, n_layers=2, tie_embeddings=False,
                      mup_base_width=base_width, **overrides))
    return ModelConfig.from_config(model, 257, "float32")


@pytest.mark.slow
def test_mup_initialisation_and_multipliers():
    cfg = mup_config(256)  # m = 4
    assert cfg.width_mult == 4 and cfg.attention_scale == 1 / 32
    params = init_params(Transformer(cfg), jax.random.PRNGKey(0), 8)
    assert np.std(params["block_0"]["mlp"]["up"]["kernel"]) == pytest.approx(0.01, rel=0.05)
    assert np.std(params["embedding"]) == pytest.approx(0.02, rel=0.05)
    assert np.std(params["unembed"]["kernel"]) == pytest.approx(0.02, rel=0.05)
    tokens = jnp.zeros((1, 8), jnp.int32)
    standard = ModelConfig(**{**vars(cfg), "mup_base_width": 0})
    # the readout multiplier divides the logits by m (the attention scale differs too, but
    # with all-zero tokens every position attends to identical values)
    np.testing.assert_allclose(Transformer(cfg).apply({"params": params}, tokens) * 4,
                               Transformer(standard).apply({"params": params}, tokens),
                               rtol=1e-4, atol=1e-5)


def test_mup_learning_rates_divide_hidden_matrix_updates_only():
    params = {"embedding": jnp.ones((5, 4)), "block_0": {"mlp": {"up": {"kernel":
              jnp.ones((4, 8))}}, "attn_norm": {"scale": jnp.ones(4)}}}
    config = base.get_config()
    config.schedule.update(dict(name="constant", warmup_steps=0))
    grads = jax.tree.map(lambda p: 0.1 * p, params)

    def first_update(width_mult):
        tx = optim.build_from_config(config, params, mup_width_mult=width_mult).tx
        return tx.update(grads, tx.init(params), params)[0]

    ratio = jax.tree.map(lambda a, b: float(a.ravel()[0] / b.ravel()[0]),
                         first_update(4.0), first_update(None))
    assert ratio == {"embedding": 1.0, "block_0": {"mlp": {"up": {"kernel": 0.25}},
                                                   "attn_norm": {"scale": 1.0}}}


@pytest.mark.parametrize("name", ["sgd", "muon"])
def test_mup_refuses_optimizers_without_adam_like_updates(name):
    config = base.get_config()
    config.optimizer.name = name
    with pytest.raises(ValueError, match=f"muP .* {name!r} needs other per-layer"):
        optim.build_from_config(config, {"embedding": jnp.ones((5, 4))}, mup_width_mult=2.0)
