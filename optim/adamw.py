"""AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization"), via optax."""
import functools

import optax

from optim.masks import weight_decay_mask
from optim.registry import register


@register("adamw", keys=("b1", "b2", "eps", "weight_decay", "decay_embeddings"))
def adamw(optimizer_cfg, schedule: optax.Schedule) -> optax.GradientTransformation:
    """optax.adamw: p <- p - lr_t * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p).

    The decoupled decay is multiplied by the scheduled lr_t (PyTorch's convention; the paper
    multiplies it by the schedule multiplier only), so the per-step shrinkage is
    lr_t * weight_decay. It applies where `weight_decay_mask` is True: matrices, and
    embeddings only if decay_embeddings.
    """
    c = optimizer_cfg
    mask = functools.partial(weight_decay_mask, decay_embeddings=c.decay_embeddings)
    return optax.adamw(learning_rate=schedule, b1=c.b1, b2=c.b2, eps=c.eps,
                       weight_decay=c.weight_decay, mask=mask)
