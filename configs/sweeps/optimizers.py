"""AdamW, SOAP and Simplified-AdEMAMix, each on its own lr grid, on the quickstart data (en_docs,
4096-token BPE, 16 x 128 tokens per step), trained on 5 tokens per non-embedding parameter with
a 10% warmup. The seed papers tune each optimizer's lr before comparing them; lm.sweep selects
the best lr of each (size, optimizer) into ROOT/best_lr.csv.

    python -m lm.sweep --sweep=configs/sweeps/optimizers.py --runs_dir=runs/sweeps/optimizers

Sized for ~10 minutes on 2 CPU cores (`--dry_run` gives the estimate), which holds one rung of
the ladder: each d128_l4 run alone costs 30x a d64_l2 run here (8x the parameters, so 8x the
tokens, at 3.7x the FLOPs per token). Add rungs to SIZES for the study; run names always carry
the size, so the runs already done keep their workdirs.
"""
from configs import quickstart
from lm.sweep.spec import Sweep, lr_grid, product, tokens_per_param, warmup_fraction

SIZES = ["d64_l2"]
# x3 steps around each optimizer's scale: Simplified-AdEMAMix sums ~1 / (1 - b1) = 100
# gradients in its momentum, so its lr is ~100x smaller than Adam's (Morwani et al. 2024).
LR_GRIDS = {"adamw": [3e-3, 1e-2, 3e-2],
            "soap": [3e-3, 1e-2, 3e-2],
            "simplified_ademamix": [3e-5, 1e-4, 3e-4]}


def get_sweep():
    return Sweep(quickstart.get_config(), product(lr_grid(LR_GRIDS), size=SIZES),
                 rules=(tokens_per_param(5, "non_embedding"), warmup_fraction(0.1)),
                 always_named=("size",))
