"""Hyperparameters of Adalayer (optim/adalayer.py; Zhao et al. 2024, "Deconstructing What Makes
a Good Optimizer for Language Models")."""
from core.fields import Field, Section, unit_interval

ADALAYER = Section("optimizer.adalayer", "Adalayer (Zhao et al. 2024): Adam with one second "
                                         "moment per layer block", dict(
    b1=unit_interval(0.9, "first-moment decay"),
    b2=unit_interval(0.95, "second-moment decay"),
    eps=Field(1e-8, "added to sqrt(v_hat)", minimum=0.0),
    weight_decay=Field(0.0, "decoupled weight decay, scaled by the lr", minimum=0.0),
    star=Field(True, "Adalayer*: the last layer and norms keep per-coordinate second moments"),
))

SECTIONS = (ADALAYER,)
