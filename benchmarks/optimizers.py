"""Optimizer cost and a short-run sanity check, side by side in one run.

    python -m benchmarks.optimizers [--size d512_l8] [--names adamw,soap,...]

For each registered optimizer (or NAME/key=value/... for a variant with its config section
changed, e.g. soap/block_size=256), one JSON line with:
  step_time_ratio       its train-step time / AdamW's (same model, batch and run)
  state_bytes_per_param optimizer-state bytes / number of parameters, and
  predicted_state_bytes_per_param  what the method's memory analysis predicts (float32 state;
                        predicted_state_floats)
  loss_first, loss_last train loss at steps 1 and --loss_steps of the quickstart model on the
                        committed en_docs_sample corpus (no network needed)
Step times are medians of --repeats timed runs of --steps steps each, after a warm-up.
"""
import ast
import itertools
import json
import math
import sys
import tempfile

import jax

import optim
from configs import base, quickstart
from core import cli
from data import prepare, sampling
from lm.model.info import count_pytree_params
from lm.train.timing import build, random_windows, time_steps
from optim.adalayer import adalayer_star_mask
from optim.adam_mini import block_kind as adam_mini_block_kind
from optim.dion import rank as dion_rank
from optim.kron import factor_floats as kron_factor_floats
from optim.masks import is_matrix, is_stacked, layer_ndim, path_name

# Peak learning rates for short runs of the quickstart model: sign methods and Muon take other
# step sizes than Adam's 3e-3; Simplified-AdEMAMix sums its momentum (~1 / (1 - b1) gradients).
SHORT_RUN_LR = {"sgd": 0.1, "lion": 3e-4, "signum": 3e-4, "muon": 0.02, "normuon": 0.02,
                "dion": 0.02, "scion": 2 ** -12, "simplified_ademamix": 5e-5}
SHORT_RUN_SECTION = {"muon": dict(adam_lr_multiplier=0.15),
                     "normuon": dict(adam_lr_multiplier=0.15)}


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


def parse_variant(spec: str) -> tuple[str, dict]:
    """"soap/block_size=256/b2=0.99" -> ("soap", {"block_size": 256, "b2": 0.99})."""
    name, *overrides = spec.split("/")
    return name, {k: ast.literal_eval(v) for k, v in (o.split("=", 1) for o in overrides)}


def _soap_factor_floats(shape, h) -> int:
    """SOAP's factors and eigenbases of one tensor: 2 sum over blocks and rotated block dims
    of d^2 (Vyas et al. 2024, Sec. 4: m^2 + n^2 each for L, R and Q_L, Q_R of an m x n
    matrix)."""
    per_dim = []
    for size in shape:
        full, rest = divmod(size, h.block_size) if h.block_size else (0, size)
        per_dim.append([h.block_size] * full + ([rest] if rest else []))
    return 2 * sum(sum(d * d for d in block if d <= h.max_precond_dim)
                   for block in itertools.product(*per_dim))


def _adam_mini_blocks(path, p, h, model) -> int:
    """Adam-mini's second moments of one tensor (Zhang et al. 2024, Sec. 2.3): one per token of
    an embedding or output table, per head of a query or key projection, per output neuron of
    the other projections, per tensor of the rest; per layer of a stack."""
    layers = p.shape[0] if is_stacked(path) else 1
    kind = adam_mini_block_kind(path, p, h.single_value_lr)
    if kind == "coordinate":
        return math.prod(p.shape)
    if kind == "token":
        return p.shape[-1] if path_name(path).endswith("kernel") else p.shape[-2]
    if kind == "neuron":
        return layers * p.shape[-1]
    if kind == "head":
        heads = model.n_heads
        if path_name(path).split("/")[-2] == "key" and model.n_kv_heads:
            heads = model.n_kv_heads
        return layers * heads
    return layers


def predicted_state_floats(name: str, h, params, model=None) -> int:
    """Optimizer-state floats each method's memory analysis predicts for `params`, with its
    config section `h` (and the model config `model`, for Adam-mini's heads): Adam-type moments
    per parameter, factored or per-block second moments, Shampoo/SOAP factor matrices per matrix
    (scalar step counters left out)."""
    star = jax.tree.leaves(adalayer_star_mask(params)) if name == "adalayer" and h.star else None
    total = 0
    for i, (path, p) in enumerate(jax.tree_util.tree_leaves_with_path(params)):
        n, matrix = math.prod(p.shape), is_matrix(path, p)
        if name in ("adamw", "nadamw", "cautious_adamw", "adopt", "schedule_free_adamw",
                    "simplified_ademamix", "sophia"):
            total += 2 * n  # two moments (schedule-free: z and v; Sophia: m and diag H)
        elif name in ("sgd", "lion", "cautious_lion", "signum"):
            total += n  # one momentum
        elif name == "ademamix":
            total += 3 * n  # fast and slow EMAs, second moment
        elif name == "adafactor":  # Shazeer & Stern 2018: row and column statistics
            factored = p.ndim == 2 and min(p.shape) >= h.min_dim_size_to_factor
            total += (sum(p.shape) if factored else n) + (n if h.momentum else 0)
        elif name == "muon":
            total += n if matrix else 2 * n  # momentum; AdamW on the rest
        elif name == "normuon":  # momentum, one second moment per output neuron; AdamW rest
            total += n + n // p.shape[-2] if matrix else 2 * n
        elif name == "mars":  # m, v, the previous gradient per 2-D tensor; AdamW on the rest
            total += 3 * n if (h.optimize_1d or layer_ndim(path, p) == 2) else 2 * n
        elif name == "dion":  # M; Q (min(a, b), r) per matrix (per layer); AdamW/Lion rest
            if matrix:
                layers, shape = (p.shape[0], p.shape[1:]) if is_stacked(path) else (1, p.shape)
                r = dion_rank(shape, h.rank_fraction, h.rank_multiple_of)
                total += n + layers * min(shape) * r
            else:
                total += (2 if h.scalar_opt == "adamw" else 1) * n
        elif name == "kron":  # momentum; per (merged) dim a d x d triangular or d diagonal factor
            layers, shape = (p.shape[0], p.shape[1:]) if is_stacked(path) else (1, p.shape)
            total += n + layers * kron_factor_floats(
                shape, max_size_triangular=h.max_size_triangular,
                min_ndim_triangular=h.min_ndim_triangular,
                memory_save_mode=h.memory_save_mode, merge_dims=h.merge_dims)
        elif name == "scion":
            total += n if h.momentum < 1 else 0  # the averaged gradient d
        elif name == "adam_mini":  # first moment, one second moment per block
            total += n + _adam_mini_blocks(path, p, h, model)
        elif name == "adalayer":  # momentum, and one second moment per block
            per_coordinate = star is not None and star[i]
            total += n + (n if per_coordinate else 1)
        elif name == "soap":
            total += 2 * n + (_soap_factor_floats(p.shape, h) if matrix else 0)
        elif name == "shampoo":  # momentum, Adam graft; a statistic and its root per axis
            small = [d for d in p.shape if d <= h.max_precond_dim]
            graft = n if h.graft == "adam" or not matrix else 0
            total += n + graft + (2 * sum(d * d for d in small) if matrix else 0)
        else:
            raise ValueError(f"no memory model for optimizer {name!r}")
    return total


def state_bytes(tree) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree))


def step_seconds(spec: str, args) -> tuple[float, float, float]:
    """(median step time, optimizer-state bytes per parameter, predicted bytes per parameter)
    on ladder size --size for optimizer variant `spec` (parse_variant)."""
    name, overrides = parse_variant(spec)
    config = base.get_config(args.size)
    config.model.max_seq_len = max(args.seq_len, config.model.max_seq_len)
    config.optimizer.name = name
    config.optimizer[name].update(overrides)
    config.train.batch_size = args.batch_size
    rt, state, _ = build(config, args.seq_len, args.vocab_size)
    n_params = count_pytree_params(state.params)
    bytes_per_param = state_bytes(state.opt_state) / n_params
    predicted = 4 * predicted_state_floats(name, config.optimizer[name], state.params,
                                           config.model) / n_params
    windows = random_windows(rt, args.batch_size, args.seq_len, args.vocab_size)
    return (time_steps(rt, state, windows, args.steps, args.repeats), bytes_per_param,
            predicted)


def short_run_losses(spec: str, batches) -> tuple[float, float]:
    name, overrides = parse_variant(spec)
    config = short_run_config(name, len(batches))
    config.optimizer[name].update(overrides)
    config.train.batch_size = batches[0].shape[0]
    rt, state, _ = build(config, batches[0].shape[1] - 1, 257)
    losses = []
    for w in batches:
        state, metrics, _ = rt.train_step(state, jax.device_put(w, rt.sharder.batch))
        losses.append(float(metrics["train/loss"]))
    return losses[0], losses[-1]


PARSER = cli.parser("python -m benchmarks.optimizers", __doc__)
PARSER.add_argument("--size", default="d512_l8")
PARSER.add_argument("--names", default=",".join(optim.registered_optimizers()
                                                + ("soap/block_size=256",)))
PARSER.add_argument("--seq_len", type=int, default=256)
PARSER.add_argument("--batch_size", type=int, default=8)
PARSER.add_argument("--vocab_size", type=int, default=8192)
PARSER.add_argument("--steps", type=int, default=3)
PARSER.add_argument("--repeats", type=int, default=3)
PARSER.add_argument("--loss_steps", type=int, default=30)


@cli.main()
def main(argv) -> None:
    args = PARSER.parse_args(argv)

    with tempfile.TemporaryDirectory() as root:
        corpus = prepare.ensure_prepared(root, "en_docs_sample")
        batches = [sampling.train_batch(corpus.train, seed=0, step=s, process_index=0,
                                        batch_size=8, seq_len=64)
                   for s in range(args.loss_steps)]
    names = args.names.split(",")
    adamw_seconds, _, _ = step_seconds("adamw", args)
    for name in names:
        # AdamW is timed again in the loop: its ratio shows the run's timing noise.
        seconds, bytes_per_param, predicted = step_seconds(name, args)
        first, last = short_run_losses(name, batches)
        print(json.dumps({"bench": "optimizer", "name": name, "size": args.size,
                          "batch_size": args.batch_size, "seq_len": args.seq_len,
                          "step_s": seconds, "adamw_step_s": adamw_seconds,
                          "step_time_ratio": seconds / adamw_seconds,
                          "state_bytes_per_param": bytes_per_param,
                          "predicted_state_bytes_per_param": predicted,
                          "loss_first": first, f"loss_step{args.loss_steps}": last,
                          "backend": jax.default_backend()}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
