"""Next-token cross-entropy with optional z-loss, in float32."""
import jax
import jax.numpy as jnp


def next_token_loss(logits, targets, z_loss: float):
    """Mean cross-entropy (nats/token) of `logits` (b, t, v) against `targets` (b, t).

    Returns (objective, cross_entropy): the objective adds z_loss * mean(log Z ^ 2), the
    auxiliary loss of PaLM (Chowdhery et al. 2022, sec. 5) that keeps the softmax normalizer
    near 1; cross_entropy is the plain loss that is reported.
    """
    logits = logits.astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    cross_entropy = jnp.mean(log_z - target_logit)
    objective = cross_entropy + z_loss * jnp.mean(jnp.square(log_z)) if z_loss else cross_entropy
    return objective, cross_entropy


def sampled_label_loss(logits, rng):
    """(mean cross-entropy of `logits` (b, t, v) against labels drawn from their own softmax,
    number of tokens): the loss whose gradient gives Sophia's Gauss-Newton-Bartlett Hessian
    estimate (Liu et al. 2023, Algorithm 2). The labels are sampled from stop-gradient logits,
    so only the cross-entropy is differentiated."""
    logits = logits.astype(jnp.float32)
    labels = jax.random.categorical(rng, jax.lax.stop_gradient(logits), axis=-1)
    _, cross_entropy = next_token_loss(logits, labels, 0.0)
    return cross_entropy, labels.size
