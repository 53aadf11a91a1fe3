"""Optimizer cost and a short-run sanity check, side by side in one run.

    python -m benchmarks.optimizers [--size d512_l8] [--names adamw,soap,...]

For each registered optimizer, one JSON line with:
  step_time_ratio       its train-step time / AdamW's (same model, batch and run)
  state_bytes_per_param optimizer-state bytes / number of parameters
  loss_first, loss_last train loss at steps 1 and --loss_steps of the quickstart model on the
                        committed en_docs_sample corpus (no network needed)
Step times are medians of --repeats timed runs of --steps steps each, after a warm-up.
"""
import argparse
import json
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import optim
from benchmarks.train_step import median_seconds
from configs import base, quickstart
from data import prepare, sampling
from lm.model import ModelConfig, Transformer, init_params
from lm.model_info import count_pytree_params
from lm.step import init_state, make_train_step

# Peak learning rates for short runs of the quickstart model: sign methods and Muon take other
# step sizes than Adam's 3e-3; Simplified-AdEMAMix sums its momentum (~1 / (1 - b1) gradients).
SHORT_RUN_LR = {"sgd": 0.1, "lion": 3e-4, "signum": 3e-4, "muon": 0.02,
                "simplified_ademamix": 5e-5}
SHORT_RUN_SECTION = {"muon": dict(adam_lr_multiplier=0.15)}


def short_run_config(name: str, steps: int):
    """The quickstart config with optimizer `name` at a learning rate that suits it."""
    config = quickstart.get_config()
    config.optimizer.name = name
    config.optimizer.lr = SHORT_RUN_LR.get(name, 3e-3)
    config.optimizer[name].update(SHORT_RUN_SECTION.get(name, {}))
    config.schedule.update(dict(name="constant" if "schedule_free" in name else "cosine",
                                warmup_steps=5))
    config.train.steps = steps
    return config


def build(config, seq_len: int, vocab_size: int):
    cfg = ModelConfig.from_config(config.model, vocab_size, "float32")
    model = Transformer(cfg)
    opt = optim.build_optimizer(config.optimizer, config.schedule, config.train.steps)
    state = init_state(init_params(model, jax.random.PRNGKey(0), seq_len), opt.tx)
    return state, jax.jit(make_train_step(model, opt.tx, 1, 0.0), donate_argnums=0)


def state_bytes(tree) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree))


def step_seconds(name: str, args) -> tuple[float, float]:
    """(median step time, optimizer-state bytes per parameter) on ladder size --size."""
    config = base.get_config(args.size)
    config.model.max_seq_len = max(args.seq_len, config.model.max_seq_len)
    config.optimizer.name = name
    state, step = build(config, args.seq_len, args.vocab_size)
    bytes_per_param = state_bytes(state.opt_state) / count_pytree_params(state.params)
    windows = jnp.asarray(np.random.default_rng(0).integers(
        0, args.vocab_size, (args.batch_size, args.seq_len + 1)), jnp.int32)
    holder = [state]

    def run_steps():
        for _ in range(args.steps):
            holder[0], metrics, _ = step(holder[0], windows)
        jax.block_until_ready(metrics)

    return median_seconds(run_steps, args.repeats) / args.steps, bytes_per_param


def short_run_losses(name: str, batches) -> tuple[float, float]:
    config = short_run_config(name, len(batches))
    state, step = build(config, batches[0].shape[1] - 1, 257)
    losses = []
    for w in batches:
        state, metrics, _ = step(state, jnp.asarray(w))
        losses.append(float(metrics["train/loss"]))
    return losses[0], losses[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="d512_l8")
    parser.add_argument("--names", default=",".join(optim.registered_optimizers()))
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loss_steps", type=int, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        corpus = prepare.ensure_prepared(root, "en_docs_sample")
        batches = [sampling.train_batch(corpus.train, seed=0, step=s, process_index=0,
                                        batch_size=8, seq_len=64)
                   for s in range(args.loss_steps)]
    names = args.names.split(",")
    adamw_seconds, _ = step_seconds("adamw", args)
    for name in names:
        # AdamW is timed again in the loop: its ratio shows the run's timing noise.
        seconds, bytes_per_param = step_seconds(name, args)
        first, last = short_run_losses(name, batches)
        print(json.dumps({"bench": "optimizer", "name": name, "size": args.size,
                          "step_s": seconds, "adamw_step_s": adamw_seconds,
                          "step_time_ratio": seconds / adamw_seconds,
                          "state_bytes_per_param": bytes_per_param,
                          "loss_first": first, f"loss_step{args.loss_steps}": last,
                          "backend": jax.default_backend()}), flush=True)


if __name__ == "__main__":
    main()
