"""Autoregressive decoding with a KV cache: pure functions of (model, params, prompt, rng).

The prompt runs through the model in one forward pass (prefill), which fills every layer's
key/value cache; each new token then costs a forward pass of one position attending over the
cache (lm.model.transformer, `decode=True`). Tokens are chosen greedily (temperature 0) or drawn
from softmax(logits / temperature), optionally restricted to the top_k most likely tokens
(Fan et al. 2018, "Hierarchical Neural Story Generation").
"""
import functools

import jax
import jax.numpy as jnp

from lm.model.transformer import Transformer, for_decoding, init_cache


def next_token(logits, rng, *, temperature: float, top_k: int):
    """One token per row of `logits` (batch, vocab): the argmax at temperature 0, else a draw
    from softmax(logits / temperature) over the top_k largest logits (all of them at 0)."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_k:
        kth_largest = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth_largest, -jnp.inf, logits)
    return jax.random.categorical(rng, logits).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("model", "new_tokens", "temperature", "top_k"))
def generate(model: Transformer, params, prompt, rng, *, new_tokens: int,
             temperature: float = 0.0, top_k: int = 0):
    """(batch, new_tokens) int32 tokens that continue `prompt` (batch, P) int32. The prompt and
    the new tokens must fit in the model's context: P + new_tokens <= model.cfg.max_seq_len
    (the cache's length and the rotary table's; lm.sample checks it)."""
    model = for_decoding(model)

    def forward(cache, tokens):
        """(logits of the last position (batch, vocab), the cache with `tokens` appended)."""
        logits, variables = model.apply({"params": params, "cache": cache}, tokens, decode=True,
                                        mutable=["cache"])
        return logits[:, -1], variables["cache"]

    def step(carry, step_rng):
        logits, cache = carry
        token = next_token(logits, step_rng, temperature=temperature, top_k=top_k)
        return forward(cache, token[:, None]), token

    first = forward(init_cache(model, prompt.shape[0]), prompt)
    _, tokens = jax.lax.scan(step, first, jax.random.split(rng, new_tokens))
    return tokens.T
