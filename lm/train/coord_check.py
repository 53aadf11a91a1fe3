"""muP coordinate check (Yang et al. 2022, "Tensor Programs V", Fig. 5 / App. D.1): the size of
activations after a few optimizer steps, against width. Under muP the curves are flat; under the
standard parameterization, with Adam, they grow with width and the learning rate stops
transferring.

    python -m lm.train.coord_check --report_dir runs/coord_check  # coord_check.json (+ .png)

(--report_dir was --out, which still works.)
"""
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import optim
from core import cli
from data.tokenizer import ByteTokenizer
from lm.model import ModelConfig, Transformer, init_params, mup_width_mult
from lm.train.settings import run_config
from lm.train.step import init_state, make_train_step

WIDTHS = (64, 128, 256, 512)
HEAD_DIM = 32


def activation_rms(model, params, tokens) -> dict:
    """RMS of the residual stream after each block and of the logits."""
    logits, state = model.apply({"params": params}, tokens, capture_intermediates=True,
                                mutable=["intermediates"])
    inter = state["intermediates"]
    out = {f"block_{i}": float(jnp.sqrt(jnp.mean(jnp.square(inter[f"block_{i}"]["__call__"][0]))))
           for i in range(model.cfg.n_layers)}
    out["logits"] = float(jnp.sqrt(jnp.mean(jnp.square(logits))))
    return out


def coordinate_check(mup: bool, widths=WIDTHS, steps: int = 5, lr: float = 1e-2,
                     n_layers: int = 2, seq_len: int = 64, batch: int = 8) -> dict:
    """{width: [activation_rms at steps 0..steps]} of AdamW training on one fixed batch."""
    vocab = ByteTokenizer.vocab_size
    tokens = jnp.asarray(np.random.default_rng(0).zipf(1.5, (batch, seq_len + 1)) % vocab,
                         jnp.int32)
    results = {}
    for width in widths:
        config = run_config()
        config.model.update(dict(d_model=width, n_layers=n_layers, n_heads=width // HEAD_DIM,
                                 mup_base_width=widths[0] if mup else 0))
        config.optimizer.lr = lr
        config.schedule.update(dict(name="constant", warmup_steps=0))
        config.train.steps = steps
        cfg = ModelConfig.from_config(config.model, vocab, "float32")
        model = Transformer(cfg)
        params = init_params(model, jax.random.PRNGKey(0), seq_len)
        opt = optim.build_from_config(config, params, mup_width_mult(config.model))
        state = init_state(params, opt.tx)
        step = jax.jit(make_train_step(model, opt.tx, 1, 0.0))
        trace = [activation_rms(model, state.params, tokens[:, :-1])]
        for _ in range(steps):
            state, _, _ = step(state, tokens)
            trace.append(activation_rms(model, state.params, tokens[:, :-1]))
        results[width] = trace
    return results


def width_exponent(results: dict, key: str = "logits", step: int = -1) -> float:
    """Slope of log(activation RMS) against log(width): 0 means width-independent."""
    widths = sorted(results)
    values = [results[w][step][key] for w in widths]
    return float(np.polyfit(np.log(widths), np.log(values), 1)[0])


PARSER = cli.parser("python -m lm.train.coord_check", __doc__)
cli.add_path(PARSER, "report_dir", default="runs/coord_check", old=("--out",),
             use="coord_check.json and coord_check.png")
PARSER.add_argument("--steps", type=int, default=5, help="optimizer steps per width")
PARSER.add_argument("--lr", type=float, default=1e-2, help="Adam's learning rate")


@cli.main()
def main(argv) -> None:
    args = PARSER.parse_args(argv)
    os.makedirs(args.report_dir, exist_ok=True)
    results = {name: coordinate_check(name == "mup", steps=args.steps, lr=args.lr)
               for name in ("standard", "mup")}
    summary = {name: {"logits_width_exponent": width_exponent(r)} for name, r in results.items()}
    with open(os.path.join(args.report_dir, "coord_check.json"), "w") as f:
        json.dump({"results": results, "summary": summary}, f, indent=1)
    print(json.dumps(summary))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: wrote the JSON only (pip install matplotlib for "
              "the plot)")
        return
    keys = list(results["standard"][WIDTHS[0]][0])
    fig, axes = plt.subplots(2, len(keys), figsize=(4 * len(keys), 6), sharex=True)
    for row, (name, res) in enumerate(results.items()):
        for col, key in enumerate(keys):
            ax = axes[row, col]
            for t in range(args.steps + 1):
                ax.plot(WIDTHS, [res[w][t][key] for w in WIDTHS], marker="o", label=f"t={t}")
            ax.set(xscale="log", yscale="log", title=f"{name}: {key}", xlabel="width")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.report_dir, "coord_check.png"), dpi=100)


if __name__ == "__main__":
    sys.exit(main())
