"""optim: schedules against closed forms, the weight-decay mask, AdamW against a NumPy
reference, gradient clipping, and the registry's errors."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import optim
from configs import base
from core.fields import Section
from lm.model import ModelConfig, Transformer, init_params
from optim import registry

PEAK = 3e-3


def schedule_cfg(**overrides) -> ml_collections.ConfigDict:
    cfg = dict(name="cosine", warmup_steps=100, final_lr_fraction=0.1, decay_fraction=0.2)
    return ml_collections.ConfigDict({**cfg, **overrides})


def groups_cfg(decay_embeddings=False, **extra) -> ml_collections.ConfigDict:
    """config.optimizer.groups: the base config's embeddings group, plus `extra` groups."""
    return ml_collections.ConfigDict(dict(
        embeddings=dict(pattern="embed", lr_multiplier=1.0, weight_decay=decay_embeddings),
        **extra))


def optimizer_cfg(decay_embeddings=False, **overrides) -> ml_collections.ConfigDict:
    """config.optimizer for AdamW; overrides of common keys go to the top, others to adamw."""
    common = dict(name="adamw", lr=PEAK, grad_clip=1.0, groups=groups_cfg(decay_embeddings))
    adamw = dict(b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1)
    for key, value in overrides.items():
        (common if key in ("name", "lr", "grad_clip", "groups") else adamw)[key] = value
    return ml_collections.ConfigDict({**common, "adamw": adamw})


def build(optimizer, schedule, total_steps, params=None) -> optim.Optimizer:
    """optim.build with `schedule` (a config) over total_steps, against `params` (default: a
    small model's)."""
    return optim.build(optimizer, optim.make_schedule(schedule, optimizer.lr, total_steps),
                       nested_params() if params is None else params)


def values(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


# --- schedules: warmup 100, total 1000, final 0.1 * peak --------------------------------------

KEY_STEPS = [0, 50, 100, 325, 550, 800, 801, 900, 1000, 1200]
EXPECTED = {  # as fractions of the peak, at KEY_STEPS
    # 0.1 + 0.9 * (1 + cos(pi * (s - 100) / 900)) / 2
    "cosine": [0, 0.5, 1, 0.1 + 0.45 * (1 + math.cos(math.pi / 4)), 0.55,
               0.1 + 0.45 * (1 + math.cos(math.pi * 7 / 9)),
               0.1 + 0.45 * (1 + math.cos(math.pi * 701 / 900)),
               0.1 + 0.45 * (1 + math.cos(math.pi * 8 / 9)), 0.1, 0.1],
    # 1 - 0.9 * (s - 100) / 900
    "linear": [0, 0.5, 1, 0.775, 0.55, 0.3, 0.299, 0.2, 0.1, 0.1],
    "constant": [0, 0.5, 1, 1, 1, 1, 1, 1, 1, 1],
    # stable until 800 = 1000 - 0.2 * 1000, then 1 - 0.9 * (s - 800) / 200
    "wsd": [0, 0.5, 1, 1, 1, 1, 1 - 0.9 / 200, 0.55, 0.1, 0.1],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_schedule_key_steps(name):
    schedule = optim.make_schedule(schedule_cfg(name=name), PEAK, 1000)
    np.testing.assert_allclose(values(schedule, KEY_STEPS), PEAK * np.array(EXPECTED[name]),
                               rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_schedule_matches_closed_form_everywhere(name):
    warmup, total, final, decay = 30, 200, 0.2, 50
    cfg = schedule_cfg(name=name, warmup_steps=warmup, final_lr_fraction=final,
                       decay_fraction=decay / total)
    s = np.arange(total + 5, dtype=np.float64)
    frac = np.clip((s - warmup) / (total - warmup), 0, 1)
    after = {"cosine": final + (1 - final) * (1 + np.cos(np.pi * frac)) / 2,
             "linear": 1 - (1 - final) * frac,
             "constant": np.ones_like(s),
             "wsd": 1 - (1 - final) * np.clip((s - (total - decay)) / decay, 0, 1)}[name]
    expected = PEAK * np.where(s < warmup, s / warmup, after)
    np.testing.assert_allclose(values(optim.make_schedule(cfg, PEAK, total), s), expected,
                               rtol=1e-5, atol=1e-12)


def test_no_warmup_starts_at_peak():
    for name in EXPECTED:
        schedule = optim.make_schedule(schedule_cfg(name=name, warmup_steps=0), PEAK, 1000)
        assert float(schedule(0)) == pytest.approx(PEAK)


def test_wsd_boundaries():
    cfg = schedule_cfg(name="wsd", warmup_steps=10, final_lr_fraction=0.0, decay_fraction=0.25)
    lr = values(optim.make_schedule(cfg, 1.0, 100), range(101))
    np.testing.assert_allclose(lr[10:76], 1.0)            # stable: warmup end .. 100 - 25
    assert np.all(np.diff(lr[75:101]) < 0)                 # decaying over the last 25 steps
    np.testing.assert_allclose(lr[[80, 100]], [0.8, 0.0], atol=1e-7)
    # decay_fraction 0: warmup then constant; 1 (no warmup): linear from the first step
    flat = optim.make_schedule(schedule_cfg(name="wsd", decay_fraction=0.0), 1.0, 1000)
    np.testing.assert_allclose(values(flat, [100, 999, 1000]), 1.0)
    all_decay = schedule_cfg(name="wsd", warmup_steps=0, decay_fraction=1.0)
    np.testing.assert_allclose(values(optim.make_schedule(all_decay, 1.0, 1000), [0, 500]),
                               [1.0, 0.55], rtol=1e-6)


def test_warmup_fraction_replaces_warmup_steps_and_scales_with_the_run():
    for total in (200, 1000):
        cfg = schedule_cfg(name="constant", warmup_steps=7, warmup_fraction=0.25)
        lr = values(optim.make_schedule(cfg, 1.0, total), [total // 8, total // 4])
        np.testing.assert_allclose(lr, [0.5, 1.0], rtol=1e-6)
    tiny = schedule_cfg(name="constant", warmup_fraction=0.01)  # rounds to at least 1 step
    assert float(optim.make_schedule(tiny, 1.0, 10)(0)) == 0.0


@pytest.mark.parametrize("overrides, total, lr, match", [
    (dict(warmup_fraction=1.0), 1000, PEAK, "schedule.warmup_fraction=1.0 must be < 1"),
    (dict(name="cosin"), 1000, PEAK, "schedule.name='cosin'.*cosine, wsd, linear, constant"),
    (dict(warmup_steps=1000), 1000, PEAK, "schedule.warmup_steps=1000.*train.steps=1000"),
    (dict(warmup_steps=-1), 1000, PEAK, "schedule.warmup_steps=-1"),
    (dict(final_lr_fraction=1.5), 1000, PEAK, "schedule.final_lr_fraction=1.5"),
    (dict(decay_fraction=-0.1), 1000, PEAK, "schedule.decay_fraction=-0.1"),
    (dict(name="wsd", warmup_steps=900, decay_fraction=0.2), 1000, PEAK,
     "schedule.warmup_steps=900 plus the wsd decay \\(200 steps"),
    (dict(), 0, PEAK, "train.steps=0"),
    (dict(), 1000, 0.0, "optimizer.lr=0.0"),
])
def test_schedule_validation(overrides, total, lr, match):
    with pytest.raises(ValueError, match=match):
        optim.make_schedule(schedule_cfg(**overrides), lr, total)


# --- weight-decay mask ------------------------------------------------------------------------

def nested_params():
    d, v, h, k, f = 8, 11, 2, 4, 16
    block = {"attn": {"query": {"kernel": jnp.ones((d, h, k))},
                      "out": {"kernel": jnp.ones((h, k, d))}},
             "attn_norm": {"scale": jnp.ones(d)},
             "mlp": {"up": {"kernel": jnp.ones((d, f)), "bias": jnp.zeros(f)},
                     "down": {"kernel": jnp.ones((f, d))}},
             "mlp_norm": {"scale": jnp.ones(d), "bias": jnp.zeros(d)}}
    return {"embed": {"embedding": jnp.ones((v, d))}, "block_0": block,
            "final_norm": {"scale": jnp.ones(d), "bias": jnp.zeros(d)},
            "unembed": {"kernel": jnp.ones((d, v))}}


def expected_mask(decay_embeddings):
    block = {"attn": {"query": {"kernel": True}, "out": {"kernel": True}},
             "attn_norm": {"scale": False},
             "mlp": {"up": {"kernel": True, "bias": False}, "down": {"kernel": True}},
             "mlp_norm": {"scale": False, "bias": False}}
    return {"embed": {"embedding": decay_embeddings}, "block_0": block,
            "final_norm": {"scale": False, "bias": False},
            "unembed": {"kernel": decay_embeddings}}


@pytest.mark.parametrize("decay_embeddings", [False, True])
def test_mask_on_nested_params(decay_embeddings):
    params = nested_params()
    groups = groups_cfg(decay_embeddings)
    assert optim.weight_decay_mask(params, groups) == expected_mask(decay_embeddings)
    assert (optim.weight_decay_mask({"params": params}, groups)
            == {"params": expected_mask(decay_embeddings)})
    abstract = jax.eval_shape(lambda: params)
    assert optim.weight_decay_mask(abstract, groups) == expected_mask(decay_embeddings)


@pytest.mark.parametrize("tie_embeddings", [False, True])
def test_mask_on_the_model_params(tie_embeddings):
    model = base.get_config().model
    model.update(dict(d_model=32, n_layers=2, n_heads=4, norm="layernorm", qk_norm=True,
                      tie_embeddings=tie_embeddings))
    cfg = ModelConfig.from_config(model, vocab_size=61, dtype="float32")
    shapes = jax.eval_shape(lambda: init_params(Transformer(cfg), jax.random.PRNGKey(0), 8))
    mask = optim.weight_decay_mask(shapes, groups_cfg())
    for path, decays in jax.tree_util.tree_leaves_with_path(mask):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        assert decays == (name.endswith("kernel") and "embed" not in name), name
    assert not optim.weight_decay_mask(shapes, groups_cfg())["embedding"]
    assert optim.weight_decay_mask(shapes, groups_cfg(decay_embeddings=True))["embedding"]


def test_stacked_layers_are_judged_per_layer():
    """A scanned model's stacked (L, m, n) kernels are L matrices and its (L, d) norm scales L
    vectors: to weight decay's default rule, to the matrix optimizers' split and to muP's
    per-layer learning rates."""
    model = base.get_config().model
    model.update(dict(d_model=32, n_layers=3, n_heads=2, scan_layers=True))
    cfg = ModelConfig.from_config(model, vocab_size=61, dtype="float32")
    params = jax.eval_shape(lambda: init_params(Transformer(cfg), jax.random.PRNGKey(0), 8))
    decay = optim.weight_decay_mask(params, groups_cfg())["layers"]
    assert decay["attn"]["query"]["kernel"] and not decay["attn_norm"]["scale"]
    matrices = optim.matrix_mask(params)["layers"]
    assert matrices["mlp"]["up"]["kernel"] and not matrices["mlp_norm"]["scale"]
    lrs = optim.lr_multipliers(params, groups_cfg(), mup_width_mult=2.0)["layers"]
    assert lrs["attn"]["out"]["kernel"] == 0.5 and lrs["attn_norm"]["scale"] == 1


# --- AdamW against a float64 NumPy reference -------------------------------------------------

def reference_adamw(params, grads_per_step, lrs, c, mask):
    """Loshchilov & Hutter's AdamW with optax's convention: decay scaled by the lr."""
    params = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in params.items()}
    trajectory = []
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        norm = math.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
        scale = min(1.0, c.grad_clip / norm) if c.grad_clip else 1.0
        for k in params:
            g = grads[k] * scale
            h = c.adamw
            m[k] = h.b1 * m[k] + (1 - h.b1) * g
            v[k] = h.b2 * v[k] + (1 - h.b2) * g ** 2
            m_hat, v_hat = m[k] / (1 - h.b1 ** t), v[k] / (1 - h.b2 ** t)
            update = m_hat / (np.sqrt(v_hat) + h.eps) + h.weight_decay * mask[k] * params[k]
            params[k] = params[k] - lr * update
        trajectory.append({k: p.copy() for k, p in params.items()})
    return trajectory


@pytest.mark.parametrize("decay_embeddings", [False, True])
@pytest.mark.parametrize("grad_clip", [0.0, 0.5])
def test_adamw_matches_numpy_reference(decay_embeddings, grad_clip):
    rng = np.random.default_rng(0)
    params = {"embedding": rng.normal(size=(5, 3)), "kernel": rng.normal(size=(3, 4)),
              "bias": rng.normal(size=4), "scale": 1 + rng.normal(size=3)}
    mask = {"embedding": decay_embeddings, "kernel": True, "bias": False, "scale": False}
    grads = [{k: rng.normal(size=p.shape) for k, p in params.items()} for _ in range(5)]
    c = optimizer_cfg(lr=0.1, weight_decay=0.5, decay_embeddings=decay_embeddings,
                      grad_clip=grad_clip)
    # linear: warmup over 2 steps, then linear to 0.1 * peak at step 6
    lrs = [0.0, 0.05, 0.1, 0.1 - 0.09 / 4, 0.1 - 0.09 / 2]
    expected = reference_adamw(params, grads, lrs, c, mask)

    # Parameters and moments in float64; optax derives the lr and the bias corrections from its
    # int32 step counter in float32, hence rtol 1e-6 (a formula error would show at ~1e-2).
    with jax.enable_x64(True):
        opt = build(c, schedule_cfg(name="linear", warmup_steps=2), 6, params)
        np.testing.assert_allclose([float(opt.schedule(s)) for s in range(5)], lrs, rtol=1e-7)
        p = jax.tree_util.tree_map(jnp.asarray, params)
        state = opt.tx.init(p)
        update = jax.jit(opt.tx.update)
        for g, want in zip(grads, expected):
            updates, state = update(jax.tree_util.tree_map(jnp.asarray, g), state, p)
            p = optax.apply_updates(p, updates)
            for k in params:
                assert p[k].dtype == jnp.float64
                np.testing.assert_allclose(np.asarray(p[k]), want[k], rtol=1e-6, atol=1e-9)


# --- clipping ---------------------------------------------------------------------------------

@pytest.fixture
def sgd(monkeypatch):
    """A test-only optimizer: update = -lr * gradient, so updates show the clipped gradient."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "HYPERPARAMETERS", dict(registry.HYPERPARAMETERS))
    registry.register("plain_sgd", Section("optimizer.plain_sgd", "test-only SGD", {}))(
        lambda h, schedule, mask: optax.sgd(schedule))
    assert "plain_sgd" in optim.registered_optimizers()
    return ml_collections.ConfigDict(dict(name="plain_sgd", lr=0.5, grad_clip=1.0,
                                          groups=groups_cfg(), plain_sgd={}))


@pytest.mark.parametrize("grad_norm, applied_norm", [(10.0, 1.0), (0.25, 0.25)])
def test_clipping_bounds_the_applied_gradient_norm(sgd, grad_norm, applied_norm):
    opt = build(sgd, schedule_cfg(name="constant", warmup_steps=0), 10)
    params = nested_params()
    rng = np.random.default_rng(0)
    grads = jax.tree_util.tree_map(lambda x: rng.normal(size=x.shape), params)
    grads = jax.tree_util.tree_map(lambda g: g * grad_norm / optax.global_norm(grads), grads)
    updates, _ = jax.jit(opt.tx.update)(grads, opt.tx.init(params), params)
    assert float(optax.global_norm(updates)) / sgd.lr == pytest.approx(applied_norm, rel=1e-5)
    # the direction is kept: the applied gradient is a positive multiple of the gradient
    ratio = jax.tree_util.tree_map(lambda u, g: -u / sgd.lr / g, updates, grads)
    np.testing.assert_allclose(np.concatenate([r.ravel() for r in jax.tree.leaves(ratio)]),
                               applied_norm / grad_norm, rtol=1e-4)


@pytest.mark.parametrize("grad_clip", [0.0, None])
def test_clipping_off(sgd, grad_clip):
    sgd.grad_clip = grad_clip
    opt = build(sgd, schedule_cfg(name="constant", warmup_steps=0), 10)
    grads = {"w": jnp.full((3, 3), 100.0)}
    updates, _ = opt.tx.update(grads, opt.tx.init(grads), grads)
    np.testing.assert_allclose(updates["w"], -50.0)


def test_opt_state_structure_does_not_depend_on_clipping():
    params = nested_params()
    structures = {jax.tree.structure(jax.eval_shape(
        build(optimizer_cfg(grad_clip=clip), schedule_cfg(), 1000).tx.init,
        params)) for clip in (0.0, None, 1.0)}
    assert len(structures) == 1


# --- registry ---------------------------------------------------------------------------------

def test_registered_optimizers():
    names = optim.registered_optimizers()
    assert "adamw" in names and list(names) == sorted(names)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builds_from_the_base_config(name):
    config = base.get_config()
    config.schedule.name = name
    opt = optim.build_from_config(config, nested_params())
    params = nested_params()
    state = jax.eval_shape(opt.tx.init, params)  # as the trainer does
    updates, _ = jax.jit(opt.tx.update)(params, opt.tx.init(params), params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert jax.tree.structure(state) == jax.tree.structure(opt.tx.init(params))
    assert float(opt.schedule(config.schedule.warmup_steps)) == pytest.approx(
        config.optimizer.lr)


def test_unknown_optimizer_lists_registered_names():
    with pytest.raises(ValueError, match="optimizer.name='adamx'.*adamw"):
        build(optimizer_cfg(name="adamx"), schedule_cfg(), 1000)


def test_unknown_hyperparameter_names_key_and_accepted_keys():
    cfg = optimizer_cfg(momentum=0.9)
    with pytest.raises(ValueError, match="'momentum', unknown to optimizer 'adamw'.*accepts "
                                         "exactly: b1, b2, eps, weight_decay"):
        build(cfg, schedule_cfg(), 1000)


def test_missing_hyperparameter_is_named():
    cfg = optimizer_cfg()
    del cfg.adamw["b2"]
    with pytest.raises(ValueError, match="lacks 'b2'.*'adamw' accepts exactly"):
        build(cfg, schedule_cfg(), 1000)


def test_negative_grad_clip():
    with pytest.raises(ValueError, match="optimizer.grad_clip=-1.0"):
        build(optimizer_cfg(grad_clip=-1.0), schedule_cfg(), 1000)


def test_register_twice_raises():
    with pytest.raises(ValueError, match="'adamw' is already registered"):
        registry.register("adamw")(lambda h, schedule, mask: optax.identity())


# --- parameter groups -------------------------------------------------------------------------

def first_updates(optimizer):
    """The first AdamW update of nested_params() with gradient 0.1 everywhere."""
    params = nested_params()
    tx = build(optimizer, schedule_cfg(name="constant", warmup_steps=0), 10).tx
    return tx.update(jax.tree.map(lambda p: jnp.full_like(p, 0.1), params), tx.init(params),
                     params)[0]


def test_group_lr_multiplier_scales_only_its_parameters():
    norms = dict(pattern="norm", lr_multiplier=0.1, weight_decay=None)
    embeddings = dict(pattern="embed", lr_multiplier=10.0, weight_decay=False)
    plain = first_updates(optimizer_cfg(weight_decay=0.0))
    groups = groups_cfg(norms=norms)
    groups.embeddings = embeddings
    grouped = first_updates(optimizer_cfg(weight_decay=0.0, groups=groups))
    ratios = jax.tree_util.tree_map_with_path(
        lambda path, a, b: (jax.tree_util.keystr(path, simple=True, separator="/"),
                            float(a.ravel()[0] / b.ravel()[0])), grouped, plain)
    for name, ratio in jax.tree.leaves(ratios, is_leaf=lambda x: isinstance(x, tuple)):
        want = 0.1 if "norm" in name else 10.0 if "embed" in name else 1.0
        assert ratio == pytest.approx(want, rel=1e-6), name


def test_group_weight_decay_overrides_the_default_rule():
    groups = groups_cfg(decay_embeddings=True,
                        norm_scales=dict(pattern="norm/scale", lr_multiplier=1.0,
                                         weight_decay=True),
                        up=dict(pattern="mlp/up/kernel", lr_multiplier=1.0, weight_decay=False))
    mask = optim.weight_decay_mask(nested_params(), groups)
    assert mask["embed"]["embedding"] and mask["unembed"]["kernel"]
    assert mask["final_norm"]["scale"] and not mask["final_norm"]["bias"]
    assert not mask["block_0"]["mlp"]["up"]["kernel"] and mask["block_0"]["mlp"]["down"]["kernel"]


@pytest.mark.parametrize("group, message", [
    (dict(pattern="nrom", lr_multiplier=1.0, weight_decay=None),
     r"groups.extra.pattern='nrom' matches no parameter; the parameters are: .*block_0/attn"),
    (dict(pattern="kernel", lr_multiplier=1.0, weight_decay=None),
     r"parameter unembed/kernel matches optimizer.groups embeddings, extra"),
    (dict(pattern="(norm", lr_multiplier=1.0, weight_decay=None),
     r"groups.extra.pattern='\(norm' is not a regular expression"),
    (dict(pattern="norm", lr_multiplier=-1.0, weight_decay=None),
     r"groups.extra.lr_multiplier=-1.0 must be >= 0"),
    (dict(pattern="norm", lr_multiplier=1.0, weight_decay=0.1),
     r"groups.extra.weight_decay=0.1 must be True, False or None"),
    (dict(pattern="norm", lr=1.0, weight_decay=None),
     r"groups.extra has keys \['lr', 'pattern', 'weight_decay'\]; a group has exactly pattern"),
])
def test_bad_groups_are_named(group, message):
    with pytest.raises(ValueError, match=message):
        build(optimizer_cfg(groups=groups_cfg(extra=group)), schedule_cfg(), 1000)


def test_weight_average_follows_the_iterates_and_is_what_is_evaluated():
    """xi_{t+1} = d xi_t + (1 - d) theta_{t+1} from xi_0 = theta_0 (Zhang et al. 2024), the
    updates untouched, and eval_params returns xi."""
    config = base.get_config()
    config.optimizer.update(dict(name="sgd", lr=0.1, grad_clip=0.0, weight_average_decay=0.9))
    config.optimizer.sgd.momentum = 0.0
    config.schedule.update(dict(name="constant", warmup_steps=0))
    params = {"embed": jnp.array([1.0, -2.0])}
    averaged = optim.build_from_config(config, params)
    state = averaged.tx.init(params)
    theta, xi = params, np.array([1.0, -2.0])
    for grad in ([1.0, 0.0], [0.5, 2.0], [-1.0, 1.0]):
        g = {"embed": jnp.array(grad)}
        updates, state = averaged.tx.update(g, state, theta)
        np.testing.assert_allclose(updates["embed"], -0.1 * np.array(grad), rtol=1e-6)
        theta = optax.apply_updates(theta, updates)
        xi = 0.9 * xi + 0.1 * np.asarray(theta["embed"])
        np.testing.assert_allclose(averaged.eval_params(state, theta)["embed"], xi, rtol=1e-6)
    config.optimizer.weight_average_decay = 1.0
    with pytest.raises(ValueError, match="weight_average_decay=1.0 must lie in"):
        optim.build_from_config(config, params)
    config.optimizer.update(dict(name="schedule_free_adamw", weight_average_decay=0.9))
    with pytest.raises(ValueError, match="evaluates its own averaged point"):
        optim.build_from_config(config, params)


def test_schedule_free_refuses_group_lr_multipliers():
    config = base.get_config()
    config.optimizer.name = "schedule_free_adamw"
    optim.build_from_config(config, nested_params())  # multipliers of 1 are fine
    config.optimizer.groups.embeddings.lr_multiplier = 2.0
    with pytest.raises(ValueError, match="groups.embeddings.lr_multiplier=2.0: optimizer "
                                         "'schedule_free_adamw' keeps its iterates"):
        optim.build_from_config(config, nested_params())


@pytest.mark.slow
def test_group_multipliers_compose_with_matrix_optimizers():
    """SOAP's AdamW part (embeddings) is scaled by the embeddings group's multiplier."""
    config = base.get_config()
    config.optimizer.name = "soap"
    config.schedule.update(dict(name="constant", warmup_steps=0))
    params = nested_params()
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.1), params)

    def updates(multiplier):
        config.optimizer.groups.embeddings.lr_multiplier = multiplier
        tx = optim.build_from_config(config, params).tx
        state = tx.init(params)
        for _ in range(2):  # SOAP's first call only gathers statistics
            u, state = tx.update(grads, state, params)
        return u

    one, three = updates(1.0), updates(3.0)
    np.testing.assert_allclose(three["embed"]["embedding"], 3 * one["embed"]["embedding"],
                               rtol=1e-6)
    np.testing.assert_array_equal(three["block_0"]["mlp"]["up"]["kernel"],
                                  one["block_0"]["mlp"]["up"]["kernel"])
