"""LaProp (Ziyin et al. 2020, "LaProp: Separating Momentum and Adaptivity in Adam", Alg. 1),
an optimizer defined outside optiscale: `--import=examples/laprop.py` registers it as `laprop`
for lm.train, lm.sweep and lm.study (docs/optimizers.md walks through it).

Adam normalises the momentum; LaProp takes the momentum of the normalised gradient:
    v <- b2 v + (1 - b2) g^2,   m <- b1 m + (1 - b1) g / (sqrt(v / (1 - b2^t)) + eps),
    p <- p - lr (m / (1 - b1^t) + wd p).
"""
import jax
import jax.numpy as jnp
import optax

from core.fields import Field, Section, positive, unit_interval
from optim import register
from optim.decay import decay_then_lr

LAPROP = Section("optimizer.laprop", "LaProp (Ziyin et al. 2020): momentum of the normalised "
                                     "gradient", dict(
    b1=unit_interval(0.9, "momentum decay", grid=(0.8, 0.9, 0.95)),
    b2=unit_interval(0.95, "second-moment decay", grid=(0.95, 0.99, 0.999)),
    eps=positive(1e-15, "added to sqrt(v)"),
    weight_decay=Field(0.1, "decoupled weight decay, scaled by the lr", minimum=0.0),
), search=dict(lr=((1e-3, 3e-3, 1e-2, 3e-2), 1e-2), warmup=((0.02, 0.1, 0.3), 0.1)))


def scale_by_laprop(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return dict(count=jnp.zeros([], jnp.int32), m=zeros, v=zeros)

    def update(grads, state, params=None):
        t = state["count"] + 1
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state["v"], grads)
        m = jax.tree.map(lambda m, g, v: b1 * m + (1 - b1) * g / (
            jnp.sqrt(v / (1 - b2 ** t)) + eps), state["m"], grads, v)
        direction = jax.tree.map(lambda m: m / (1 - b1 ** t), m)
        return direction, dict(count=t, m=m, v=v)

    return optax.GradientTransformation(init, update)


@register("laprop", hyperparameters=LAPROP)
def laprop(h, schedule, decay_mask):
    return optax.chain(scale_by_laprop(h.b1, h.b2, h.eps),
                       *decay_then_lr(schedule, h.weight_decay, decay_mask))
