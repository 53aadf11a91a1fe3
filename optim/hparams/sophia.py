"""Hyperparameters of Sophia (optim/sophia.py; Liu et al. 2024), the authors' SophiaG defaults."""
from core.fields import Field, Section, positive, unit_interval

ESTIMATORS = ("gnb", "hutchinson")

SOPHIA = Section("optimizer.sophia", "Sophia (Liu et al. 2024): clipped steps preconditioned by "
                                     "a diagonal Hessian estimate", dict(
    b1=unit_interval(0.965, "momentum decay"),
    b2=unit_interval(0.99, "Hessian-estimate EMA decay"),
    rho=positive(0.04, "clipping scale of m / max(rho h, eps)"),
    eps=positive(1e-15, "floor of the denominator"),
    weight_decay=Field(0.1, "decoupled weight decay, scaled by the lr", minimum=0.0),
    update_interval=Field(10, "steps k between Hessian estimates", minimum=1),
    estimator=Field("gnb", "gnb (Sophia-G, Gauss-Newton-Bartlett) | hutchinson (Sophia-H)",
                    choices=ESTIMATORS),
))

SECTIONS = (SOPHIA,)
