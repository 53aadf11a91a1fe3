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


LARGE_VOCAB = 32768  # model.loss_chunk=-1 chunks the loss from this vocabulary size on
AUTO_CHUNK = 512     # sequence positions per chunk when it does


def chunk_positions(setting: int, vocab_size: int) -> int:
    """Sequence positions per loss chunk for model.loss_chunk `setting` (0: no chunks)."""
    if setting == -1:
        return AUTO_CHUNK if vocab_size >= LARGE_VOCAB else 0
    return setting


def chunked_next_token_loss(hidden, head, targets, z_loss: float, chunk: int,
                            logit_scale: float = 1.0, dtype=jnp.float32):
    """`next_token_loss` of logits = hidden (b, t, d) @ head (vocab, d)^T * logit_scale, computed
    `chunk` sequence positions at a time: each chunk's (b, chunk, vocab) logits exist only
    inside a jax.checkpoint, so the backward pass recomputes them instead of keeping the whole
    (b, t, vocab) array (MaxText's vocabulary tiling, levanter's blockwise cross-entropy). The
    matmul takes `dtype` inputs with float32 accumulation; log Z and the z-loss are exact.
    Positions past the last full chunk are padded and masked out."""
    batch, seq, d_model = hidden.shape
    chunks = -(-seq // chunk)
    pad = chunks * chunk - seq
    valid = jnp.pad(jnp.ones((batch, seq), jnp.float32), ((0, 0), (0, pad)))
    hidden, targets = (jnp.pad(x, ((0, 0), (0, pad)) + ((0, 0),) * (x.ndim - 2))
                       for x in (hidden, targets))
    head = head.astype(dtype)

    @jax.checkpoint
    def sums(x, y, mask):
        logits = jnp.einsum("btd,vd->btv", x.astype(dtype), head,
                            preferred_element_type=jnp.float32) * logit_scale
        log_z = jax.nn.logsumexp(logits, axis=-1)
        target_logit = jnp.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
        return jnp.sum((log_z - target_logit) * mask), jnp.sum(jnp.square(log_z) * mask)

    def split(x):  # (b, chunks * chunk, ...) -> (chunks, b, chunk, ...)
        return jnp.moveaxis(x.reshape(batch, chunks, chunk, *x.shape[2:]), 1, 0)

    ce_sums, z_sums = jax.lax.map(lambda args: sums(*args),
                                  (split(hidden), split(targets), split(valid)))
    tokens = batch * seq
    cross_entropy = jnp.sum(ce_sums) / tokens
    objective = cross_entropy + z_loss * jnp.sum(z_sums) / tokens if z_loss else cross_entropy
    return objective, cross_entropy
