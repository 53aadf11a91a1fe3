"""optiscale's train step against google-deepmind/nanodo's, side by side on the same shape.

    git clone https://github.com/google-deepmind/nanodo /tmp/nanodo
    python -m benchmarks.nanodo --nanodo=/tmp/nanodo [--sizes d256_l4,d384_l6] [--rounds 3]

Both models: LayerNorm, GELU MLP (4 d), tied embeddings, vocabulary 8192, batch 16 x 256,
float32, AdamW with global-norm clipping, one jitted step each. nanodo's model is imported from
the checkout (`nanodo.model.TransformerDo`, which needs only flax); its step is nanodo's
`_train_step` (train.py) written out without its metrics library: value_and_grad of the mean
next-token cross-entropy, optax update, apply. Differences that stay: nanodo learns position
embeddings where optiscale rotates (RoPE), and nanodo's layer norms have no bias, optiscale's
do. The two steps alternate `--rounds` times so both see the same machine state; each time is
the median of `--repeats` steps. Prints JSON lines and, last, optiscale's tokens/s over
nanodo's per size.
"""
import functools
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import optax

from configs import base
from core import cli
from lm.train.timing import build, random_windows

VOCAB, BATCH, SEQ = 8192, 16, 256


def nanodo_step(size: str, nanodo_path: str):
    """(step, state) of nanodo's model at ladder size `size`: step(state, windows) -> state."""
    sys.path.insert(0, nanodo_path)
    from nanodo import model as nanodo_model  # noqa: E402  (from the user's checkout)

    d_model, n_layers, n_heads = base.get_config(size).model.d_model, \
        base.get_config(size).model.n_layers, base.get_config(size).model.n_heads
    cfg = nanodo_model.DoConfig(D=d_model, H=n_heads, L=SEQ, N=n_layers, V=VOCAB,
                                F=4 * d_model, fsdp_enabled=False)
    module = nanodo_model.TransformerDo(cfg)
    params = module.init(jax.random.PRNGKey(0), jnp.zeros((1, SEQ), jnp.int32))["params"]
    tx = optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(1e-3, b1=0.9, b2=0.95, weight_decay=0.1))

    def loss_fn(params, windows):
        logits = module.apply({"params": params}, windows[:, :-1])
        return optax.losses.softmax_cross_entropy_with_integer_labels(
            logits, windows[:, 1:]).mean()

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state, windows):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, windows)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return step, (params, tx.init(params))


def optiscale_step(size: str):
    config = base.get_config(size)
    config.model.norm = "layernorm"
    config.data.seq_len = SEQ
    config.train.batch_size = BATCH
    rt, state, _ = build(config, SEQ, VOCAB)

    def step(state, windows):
        state, metrics, _ = rt.train_step(state, windows)
        return state, metrics["train/loss"]
    return step, state, rt


def median_step_seconds(step, state, windows, repeats: int):
    state, loss = step(state, windows)  # compile
    jax.block_until_ready(loss)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, loss = step(state, windows)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - start)
    return statistics.median(times), state


PARSER = cli.parser("python -m benchmarks.nanodo", __doc__)
PARSER.add_argument("--nanodo", required=True, help="a checkout of google-deepmind/nanodo")
PARSER.add_argument("--sizes", default="d256_l4,d384_l6")
PARSER.add_argument("--rounds", type=int, default=3)
PARSER.add_argument("--repeats", type=int, default=5)


@cli.main()
def main(argv) -> None:
    args = PARSER.parse_args(argv)
    for size in args.sizes.split(","):
        ours, our_state, rt = optiscale_step(size)
        theirs, their_state = nanodo_step(size, args.nanodo)
        windows = random_windows(rt, BATCH, SEQ, VOCAB)
        seconds = {"optiscale": [], "nanodo": []}
        for _ in range(args.rounds):
            s, our_state = median_step_seconds(ours, our_state, windows, args.repeats)
            seconds["optiscale"].append(s)
            s, their_state = median_step_seconds(theirs, their_state, windows, args.repeats)
            seconds["nanodo"].append(s)
        tokens = BATCH * SEQ
        row = {"bench": "nanodo", "size": size, "batch": BATCH, "seq_len": SEQ, "vocab": VOCAB,
               "device": jax.devices()[0].device_kind,
               **{f"{k}_step_s": statistics.median(v) for k, v in seconds.items()},
               **{f"{k}_tokens_per_s": tokens / statistics.median(v)
                  for k, v in seconds.items()}}
        row["optiscale_over_nanodo"] = row["optiscale_tokens_per_s"] / row["nanodo_tokens_per_s"]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
