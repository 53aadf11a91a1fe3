"""Hyperparameters of Sophia (optim/sophia.py; Liu et al. 2024), the authors' SophiaG defaults."""
from core.fields import Field, Section, positive, unit_interval
from optim.hparams.from_optax import LION_SEARCH

ESTIMATORS = ("gnb", "hutchinson")

SOPHIA = Section("optimizer.sophia", "Sophia (Liu et al. 2024): clipped steps preconditioned by "
                                     "a diagonal Hessian estimate", dict(
    b1=unit_interval(0.965, "momentum decay", grid=(0.9, 0.965, 0.99)),
    b2=unit_interval(0.99, "Hessian-estimate EMA decay", grid=(0.9, 0.95, 0.99)),
    rho=positive(0.04, "clipping scale of m / max(rho h, eps)", grid=(0.01, 0.02, 0.04, 0.08)),
    eps=positive(1e-15, "floor of the denominator"),
    weight_decay=Field(0.1, "decoupled weight decay, scaled by the lr", minimum=0.0,
                       grid=(0.0, 0.1, 0.2, 0.4)),
    update_interval=Field(10, "steps k between Hessian estimates", minimum=1),
    estimator=Field("gnb", "gnb (Sophia-G, Gauss-Newton-Bartlett) | hutchinson (Sophia-H)",
                    choices=ESTIMATORS),
),
    # Liu et al. tune the lr and rho; the starts are their SophiaG class's defaults. Every entry
    # of the step is clipped to +-lr, and their README (github.com/Liuhong99/Sophia) puts
    # Sophia's lr at about AdamW's and 5-10x Lion's on GPT-2, rho at 0.05-0.08 and weight decay
    # at 0.2, ~2x AdamW's. The Hessian EMA is not bias-corrected and a 300-step run makes only
    # 30 estimates (k = 10): b2 0.99 leaves h at 1 - 0.99^30 = 26% of its value, so the b2 grid
    # goes down to 0.9. At the tiny scale (d48_l2, 300 steps, the starts) lr 3e-4 / 1e-3 /
    # 3e-3 / 1e-2 / 3e-2 reached 3.44 / 2.93 / 3.11 / 3.18 / 3.37 (AdamW at its start: 2.61):
    # the clipped, sign-like step wants Lion's lr here. At lr 1e-3, b1 0.9 reached 2.76, rho
    # 0.01 2.92, b2 0.9 2.94; at 3e-3 rho 0.08 3.12.
    search=LION_SEARCH)

SECTIONS = (SOPHIA,)
