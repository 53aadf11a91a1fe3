"""Hyperparameters of Adalayer (optim/adalayer.py; Zhao et al. 2024, "Deconstructing What Makes
a Good Optimizer for Language Models")."""
from core.fields import Field, Section, unit_interval
from optim.hparams.from_optax import ADAM_LIKE_SEARCH

ADALAYER = Section("optimizer.adalayer", "Adalayer (Zhao et al. 2024): Adam with one second "
                                         "moment per layer block", dict(
    b1=unit_interval(0.9, "first-moment decay", grid=(0.8, 0.9, 0.95)),
    b2=unit_interval(0.95, "second-moment decay", grid=(0.9, 0.95, 0.99)),
    eps=Field(1e-8, "added to sqrt(v_hat)", minimum=0.0),
    weight_decay=Field(0.0, "decoupled weight decay, scaled by the lr", minimum=0.0,
                       grid=(0.0, 0.1, 0.3)),
    star=Field(True, "Adalayer*: the last layer and norms keep per-coordinate second moments"),
),
    # The mean (not the sum) of g^2 per block keeps v on Adam's scale, so Adalayer's lr is
    # Adam's: AdamW's lr, warmup and clipping grids. The starts are Zhao et al.'s defaults (b1
    # 0.9, b2 0.95, eps 1e-8, no weight decay), around which they sweep the lr and the betas.
    # At the tiny scale (d48_l2, 300 steps, the starts) lr 3e-3 / 1e-2 / 3e-2 reached 2.75 /
    # 2.68 / 3.24 (AdamW at its start: 2.61).
    search=ADAM_LIKE_SEARCH)

SECTIONS = (ADALAYER,)
