"""Optimizers optax already ships, registered with their papers' defaults
(optim/hparams/from_optax.py).

Each builder returns a transform that includes the learning-rate schedule and, where the
optimizer has one, decoupled weight decay on the parameters `decay_mask` selects (by default
the hidden matrices; see optim.masks.weight_decay_mask and config.optimizer.groups). optax
multiplies that decay by the scheduled lr (p <- p - lr_t * wd * p), the PyTorch convention.
"""
import jax
import jax.numpy as jnp
import optax
from optax import contrib

from optim import checks
from optim.decay import decay_then_lr
from optim.hparams.from_optax import NADAMW
from optim.masks import is_matrix, is_stacked, layerwise
from optim.registry import register
from optim.schedules import scaled_learning_rate


@register("adamw")
def adamw(h, schedule, decay_mask):
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay."""
    return optax.adamw(learning_rate=schedule, b1=h.b1, b2=h.b2, eps=h.eps,
                       weight_decay=h.weight_decay, mask=decay_mask)


@register("sgd", supports_mup=False)
def sgd(h, schedule, decay_mask):
    """SGD with heavy-ball or Nesterov momentum (Sutskever et al. 2013)."""
    return optax.chain(optax.add_decayed_weights(h.weight_decay, decay_mask),
                       optax.sgd(schedule, momentum=h.momentum or None, nesterov=h.nesterov))


@register("lion")
def lion(h, schedule, decay_mask):
    """Lion (Chen et al. 2023, Algorithm 2): sign of an interpolated momentum. The paper uses
    a 3-10x smaller lr and 3-10x larger weight decay than AdamW."""
    return optax.lion(schedule, b1=h.b1, b2=h.b2, weight_decay=h.weight_decay, mask=decay_mask)


@register("signum")
def signum(h, schedule, decay_mask):
    """Signum (Bernstein et al. 2018): the sign of an EMA of gradients,
    m <- b1 m + (1 - b1) g, update = -lr sign(m); the "signum" of Zhao et al. 2024."""
    return optax.chain(optax.ema(h.b1, debias=False), optax.scale_by_sign(),
                       optax.add_decayed_weights(h.weight_decay, decay_mask),
                       optax.scale_by_learning_rate(schedule))


@register("adafactor")
def adafactor(h, schedule, decay_mask):
    """Adafactor (Shazeer & Stern 2018): factored second moments, update clipping. With
    multiply_by_parameter_scale off, `lr` is an absolute step size as in AdamW; momentum 0 is
    the paper's momentum-free variant. Each layer of stacked (scanned) parameters is its own
    tensor (`layerwise`); the decay, p <- p - wd p as optax.adafactor applies it (not scaled
    by the lr), comes after, where its mask sees the stacked parameters."""
    factored = optax.adafactor(schedule, min_dim_size_to_factor=h.min_dim_size_to_factor,
                               decay_rate=h.decay_rate, clipping_threshold=h.clipping_threshold,
                               momentum=h.momentum or None,
                               multiply_by_parameter_scale=h.multiply_by_parameter_scale)
    return optax.chain(layerwise(factored), optax.add_decayed_weights(-h.weight_decay,
                                                                      decay_mask))


def _muon_dimension_numbers(params):
    """Muon for every weight matrix (embedding tables excluded; each layer of a stack of them
    orthogonalised on its own: axis 0 a batch axis), AdamW for the rest."""
    def dims(path, x):
        if not is_matrix(path, x):
            return None
        if is_stacked(path):
            return contrib.MuonDimensionNumbers(reduction_axis=1, output_axis=2)
        return contrib.MuonDimensionNumbers()
    return jax.tree_util.tree_map_with_path(dims, params)


@register("muon", supports_mup=False)
def muon(h, schedule, decay_mask):
    """Muon (Jordan et al. 2024): momentum orthogonalised by Newton-Schulz iterations on the
    weight matrices; embeddings, norms and biases go to AdamW (adam_* keys), as in the
    reference, with lr scaled by adam_lr_multiplier."""
    return contrib.muon(schedule, ns_steps=h.ns_steps, beta=h.beta, nesterov=h.nesterov,
                        weight_decay=h.weight_decay, weight_decay_mask=decay_mask,
                        adam_b1=h.adam_b1, adam_b2=h.adam_b2,
                        adam_weight_decay=h.adam_weight_decay,
                        adam_learning_rate=scaled_learning_rate(schedule, h.adam_lr_multiplier),
                        muon_weight_dimension_numbers=_muon_dimension_numbers)


def _schedule_free_eval_params(opt_state, params):
    """Schedule-free methods train at y but are evaluated at the averaged iterate x."""
    return contrib.schedule_free_eval_params(opt_state, params)


@register("schedule_free_adamw", eval_params=_schedule_free_eval_params,
          linear_in_lr=False)
def schedule_free_adamw(h, schedule, decay_mask):
    """Schedule-free AdamW (Defazio et al. 2024, Algorithm 1), composed as
    optax.contrib.schedule_free_adamw is but with the weight-decay mask. Pair it with
    schedule.name=constant (warmup only): the method replaces the decay schedule."""
    base = optax.chain(optax.scale_by_rms(decay=h.b2, eps=h.eps, eps_in_sqrt=False,
                                          bias_correction=True),
                       optax.add_decayed_weights(h.weight_decay, decay_mask),
                       optax.scale_by_learning_rate(schedule))
    return contrib.schedule_free(base, learning_rate=schedule, b1=h.b1,
                                 weight_lr_power=h.weight_lr_power)


@register("adopt")
def adopt(h, schedule, decay_mask):
    """ADOPT (Taniguchi et al. 2024): Adam with the second moment of the previous step, so
    the normalisation is independent of the current gradient; with the paper's clipping."""
    return optax.chain(contrib.scale_by_adopt(b1=h.b1, b2=h.b2, eps=h.eps),
                       optax.add_decayed_weights(h.weight_decay, decay_mask),
                       optax.scale_by_learning_rate(schedule))


@NADAMW.defaults_of(exclude=("weight_decay",))
def scale_by_nadamw(*, b1, b2, eps) -> optax.GradientTransformation:
    """NAdamW's direction (Dozat 2016, "Incorporating Nesterov Momentum into Adam"; the
    simplified form of Choi et al. 2019, arXiv:1910.05446, Table 1, which AlgoPerf's baseline
    implements, Dahl et al. 2023, arXiv:2306.07179). At the 1-based step t, with gradient g:

        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
        u  = (b1 m + (1 - b1) g) / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps)

    i.e. Adam's direction with the first moment replaced by its one-step look-ahead, both
    terms bias-corrected by 1 - b1^t, as the reference (mlcommons/algorithmic-efficiency,
    algorithms/archived_paper_baselines/nadamw/pytorch/submission.py, class NAdamW) does.

    Not optax.nadamw: optax.scale_by_adam(nesterov=True) (what optax.nadamw and levanter's
    NAdamW use) corrects the momentum term by 1 - b1^(t+1) and the gradient term by 1 - b1^t
    (Dozat's Algorithm 2), a different step while t is small: at t = 1 and b1 = 0.95 it is
    1.49 g / (|g| + eps) against the reference's 1.95 g / (|g| + eps), and under a constant
    gradient the two agree to 1e-3 relative only after ~75 steps. The state is optax's
    ScaleByAdamState (count, mu, nu), so it shards and checkpoints as optax.adamw's does.

    Args:
      b1: first-moment decay; it also weights the look-ahead (the reference divides by b1
        to undo it in place, so it needs b1 > 0; here b1 = 0 is plain RMSprop).
      b2: second-moment decay.
      eps: added to the bias-corrected sqrt(v) (outside the square root).
    """
    checks.in_unit_interval("b1", b1)
    checks.in_unit_interval("b2", b2)
    checks.nonnegative("eps", eps)

    def init_fn(params):
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32),
                                      mu=optax.tree.zeros_like(params),
                                      nu=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        look_ahead = optax.tree.update_moment(updates, mu, b1, 1)  # b1 m_t + (1 - b1) g
        mu_hat = optax.tree.bias_correction(look_ahead, b1, count)
        nu_hat = optax.tree.bias_correction(nu, b2, count)
        direction = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), mu_hat, nu_hat)
        return direction, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


@NADAMW.defaults_of()
def nadamw(learning_rate: optax.ScalarOrSchedule, *, b1, b2, eps, weight_decay,
           mask=None) -> optax.GradientTransformation:
    """NAdamW as AlgoPerf's PyTorch baseline steps it: `scale_by_nadamw`, decoupled weight
    decay of the parameters `mask` selects (None: all; optax's `mask`) and the learning rate
    (a float or a schedule of the 0-based update count):

        p <- p (1 - lr_t wd) - lr_t u     (= p - lr_t (u + wd p), optax's order)

    State: int32 count and two parameter-shaped moments (plus the schedule's count)."""
    checks.learning_rate(learning_rate)
    checks.nonnegative("weight_decay", weight_decay)
    return optax.chain(scale_by_nadamw(b1=b1, b2=b2, eps=eps),
                       *decay_then_lr(learning_rate, weight_decay, mask))


@register("nadamw")
def _nadamw_from_config(h, schedule, decay_mask):
    """config.optimizer.nadamw: NAdamW on every parameter, decaying those `decay_mask`
    selects."""
    return nadamw(schedule, mask=decay_mask, **NADAMW.values(h))
