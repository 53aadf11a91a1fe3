"""Hyperparameters of AdEMAMix (Pagliardini et al. 2024) and Simplified-AdEMAMix (Morwani et al.
2025), optim/ademamix.py."""
from core.fields import Field, Section, unit_interval
from optim.hparams.from_optax import ADAM_LIKE_SEARCH

ADEMAMIX = Section("optimizer.ademamix", "AdEMAMix (Pagliardini et al. 2024, Algorithm 1): Adam "
                                         "plus a slow EMA of gradients", dict(
    b1=unit_interval(0.9, "fast EMA decay"),
    b2=unit_interval(0.999, "second-moment decay"),
    b3=unit_interval(0.9999, "slow EMA decay", grid=(0.99, 0.999, 0.9999)),
    alpha=Field(2.0, "weight of the slow EMA", minimum=0.0, grid=(1.0, 2.0, 4.0, 8.0)),
    eps=Field(1e-8, "added to sqrt(v_hat)", minimum=0.0),
    weight_decay=Field(0.1, "decoupled weight decay (the paper's LM setting; the function's "
                            "default is the reference's 0)", minimum=0.0, grid=(0.0, 0.1, 0.3)),
    b3_warmup=Field(0, "steps over which b3 warms up from b1; 0: none (the study sets the run "
                       "length)", minimum=0),
    alpha_warmup=Field(0, "steps over which alpha warms up from 0; 0: none", minimum=0),
),
    # The starts are the reference class's defaults (github.com/apple/ml-ademamix: betas (0.9,
    # 0.999, 0.9999), alpha 2) with the paper's LM weight decay 0.1; its README's LM setting is
    # alpha 8 at AdamW's lr, with b3 and alpha warmed up over the whole run (the study does).
    # The step is Adam's plus alpha x a slow EMA that the warmups keep small early: AdamW's
    # grids. At the tiny scale (d48_l2, 300 steps) alpha 2 reached 2.56 / 2.88 at lr 1e-2 /
    # 3e-2, alpha 8 2.72 / 2.81 at 3e-3 / 1e-2 (AdamW at its start: 2.61), so the alpha grid
    # spans 1-8 from 2. A 300-step run is far shorter than b3 0.9999's half-life (6,931 steps):
    # the b3 grid reaches down to 0.99 (69 steps).
    search=ADAM_LIKE_SEARCH)

SIMPLIFIED_ADEMAMIX = Section(
    "optimizer.simplified_ademamix",
    "Simplified-AdEMAMix (Morwani et al. 2025): (alpha g + m) / sqrt(nu), m a sum of gradients",
    dict(
        b1=unit_interval(0.99, "momentum decay (m sums ~1 / (1 - b1) gradients)",
                         grid=(0.9, 0.99, 0.999)),
        b2=unit_interval(0.95, "second-moment decay", grid=(0.95, 0.99, 0.999)),
        alpha=Field(0.0, "weight of the current gradient", minimum=0.0,
                    grid=(0.0, 3.0, 10.0, 30.0, 100.0)),
        eps=Field(1e-8, "added to sqrt(nu)", minimum=0.0),
        weight_decay=Field(0.0, "decoupled weight decay", minimum=0.0, grid=(0.0, 0.1)),
        b1_warmup=Field(0, "steps over which b1 warms up from min_b1; 0: none", minimum=0),
        min_b1=unit_interval(0.9, "b1 at the start of its warmup"),
        bias_correction1=Field(False, "bias-correct m"),
        bias_correction2=Field(True, "bias-correct nu"),
    ),
    # The update sums ~1 / (1 - b1) = 100 gradients in m, so its step is 7x (uncorrelated
    # gradients) to (100 + alpha)x Adam's at one lr: its lr grid sits 10-100x below Adam's and
    # is searched jointly with alpha. Morwani et al. find the best alpha grows as the batch
    # shrinks (~100 at 32K-token batches, ~0 at 1M); the tiny study's batches hold 1K.
    search=dict(lr=((1e-5, 3e-5, 1e-4, 3e-4, 1e-3), 1e-4), warmup=((0.02, 0.1, 0.3), 0.1),
                grad_clip=((0.0, 1.0, 2.0), 1.0)),
    search_with_lr=("alpha",))

SECTIONS = (ADEMAMIX, SIMPLIFIED_ADEMAMIX)
