"""Hyperparameters of MARS-AdamW (optim/mars.py; Yuan et al. 2024): the authors' GPT-2 defaults
(github.com/AGI-Arena/MARS, config/train_gpt2_*_mars.py, MARS/train_mars.py and the README's
table), which differ from the MARS class's constructor defaults in weight_decay (0.01, the
constructor's 0) and lr_1d (half the lr at every GPT-2 size; the constructor's lr_1d = lr)."""
from core.fields import Field, Section, positive, unit_interval
from optim.hparams.from_optax import ADAM_LIKE_SEARCH

# MARS's update is Adam-like (m_hat / sqrt(v_hat)), but its best lr is higher than AdamW's
# (plausibly because v also holds the correction's noise, which shrinks the step): the authors'
# GPT-2 lrs are 10x AdamW's (6e-3 vs 6e-4 small, 3e-3 vs 3e-4 medium, 2e-3 vs 2e-4 large), and
# on the quickstart model (d=128,
# 512-token batches, 200 cosine steps) its best lr was 3e-3 where AdamW's was <= 1e-3 (AdamW
# 1e-3: 2.70, 3e-3: 2.80; MARS 1e-3: 2.80, 3e-3: 2.66, 1e-2: 3.23). So the grid is AdamW's
# shifted up half a decade, centred on 3x AdamW's start, its top 30x.
MARS_SEARCH = dict(ADAM_LIKE_SEARCH, lr=((3e-3, 1e-2, 3e-2, 1e-1, 3e-1), 3e-2))

MARS = Section("optimizer.mars", "MARS-AdamW (Yuan et al. 2024): AdamW on a clipped, "
                                 "variance-reduced gradient for matrices, AdamW on the rest", dict(
    b1=unit_interval(0.95, "first-moment decay (also sets the correction's b1 / (1 - b1))",
                     grid=(0.9, 0.95, 0.98)),
    b2=unit_interval(0.99, "second-moment decay", grid=(0.95, 0.99, 0.999)),
    gamma=Field(0.025, "strength of the gradient correction gamma b1 / (1 - b1) (g_t - g_t-1); "
                       "0: AdamW on the clipped gradient", minimum=0.0,
                grid=(0.0, 0.0125, 0.025, 0.05)),
    eps=positive(1e-8, "added to sqrt(v_hat), for both parts"),
    weight_decay=Field(0.01, "decoupled weight decay of the MARS part, scaled by the lr",
                       minimum=0.0, grid=(0.0, 0.01, 0.1)),
    optimize_1d=Field(False, "MARS on every parameter; off: only on 2-D (per layer) ones, "
                             "AdamW (*_1d keys) on vectors and other ranks"),
    lr_1d_factor=Field(0.5, "AdamW part's lr / the lr (the reference's lr_1d / lr; GPT-2: "
                            "3e-3 / 6e-3)", minimum=0.0, grid=(0.25, 0.5, 1.0)),
    b1_1d=unit_interval(0.9, "AdamW part: first-moment decay"),
    b2_1d=unit_interval(0.95, "AdamW part: second-moment decay"),
    weight_decay_1d=Field(0.1, "AdamW part: decoupled weight decay, scaled by its lr",
                          minimum=0.0),
), search=MARS_SEARCH)

SECTIONS = (MARS,)
