"""Hyperparameters of the optimizers optax ships (optim/from_optax.py), with their papers'
defaults."""
from core.fields import Field, Section, unit_interval

_LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
# The study's grids of the keys every Adam-like optimizer shares (its lr, warmup fraction and
# clipping), at the tiny scale (widths 32-96, 1024-token batches).
ADAM_LIKE_SEARCH = dict(lr=(_LRS, 1e-2), warmup=((0.02, 0.1, 0.3), 0.1),
                        grad_clip=((0.0, 1.0, 2.0), 1.0))

ADAMW = Section("optimizer.adamw", "AdamW (Loshchilov & Hutter 2019)", dict(
    b1=unit_interval(0.9, "first-moment decay", grid=(0.8, 0.9, 0.95)),
    b2=unit_interval(0.95, "second-moment decay", grid=(0.95, 0.99, 0.999)),
    eps=Field(1e-8, "added to sqrt(v_hat)", minimum=0.0, grid=(1e-10, 1e-8, 1e-6)),
    weight_decay=Field(0.1, "decoupled weight decay, scaled by the lr (PyTorch convention)",
                       minimum=0.0, grid=(0.0, 0.1, 0.3)),
), search=ADAM_LIKE_SEARCH)

SGD = Section("optimizer.sgd", "SGD with heavy-ball or Nesterov momentum (Sutskever et al. 2013)",
              dict(
    momentum=unit_interval(0.9, "momentum; 0: plain SGD"),
    nesterov=Field(False, "Nesterov momentum"),
    weight_decay=Field(0.0, "L2-style decay added to the gradient", minimum=0.0),
))

LION = Section("optimizer.lion", "Lion (Chen et al. 2023, Algorithm 2)", dict(
    b1=unit_interval(0.9, "interpolation of momentum and gradient for the sign"),
    b2=unit_interval(0.99, "momentum decay"),
    weight_decay=Field(0.1, "decoupled weight decay (the paper: 3-10x AdamW's)", minimum=0.0),
))

SIGNUM = Section("optimizer.signum", "Signum (Bernstein et al. 2018): sign of a gradient EMA",
                 dict(
    b1=unit_interval(0.9, "gradient EMA decay"),
    weight_decay=Field(0.0, "decoupled weight decay", minimum=0.0),
))

ADAFACTOR = Section("optimizer.adafactor", "Adafactor (Shazeer & Stern 2018)", dict(
    decay_rate=Field(0.8, "exponent of the second-moment decay schedule 1 - t^-decay_rate"),
    clipping_threshold=Field(1.0, "update clipping threshold d", minimum=0.0),
    momentum=unit_interval(0.0, "first-moment decay; 0: the paper's momentum-free variant"),
    multiply_by_parameter_scale=Field(False, "scale the update by the parameter RMS (off: lr is "
                                             "an absolute step size as in AdamW)"),
    weight_decay=Field(0.0, "decay p <- p - wd p, not scaled by the lr", minimum=0.0),
    min_dim_size_to_factor=Field(128, "factor second moments of dims at least this large",
                                 minimum=1),
))

MUON = Section("optimizer.muon", "Muon (Jordan et al. 2024): orthogonalised momentum on weight "
                                 "matrices, AdamW on the rest", dict(
    beta=unit_interval(0.95, "momentum decay"),
    ns_steps=Field(5, "Newton-Schulz iterations", minimum=1),
    nesterov=Field(True, "Nesterov momentum"),
    weight_decay=Field(0.0, "decoupled weight decay of the matrices", minimum=0.0),
    adam_b1=unit_interval(0.9, "AdamW part: first-moment decay"),
    adam_b2=unit_interval(0.95, "AdamW part: second-moment decay"),
    adam_weight_decay=Field(0.0, "AdamW part: decoupled weight decay", minimum=0.0),
    adam_lr_multiplier=Field(1.0, "AdamW part: lr multiplier", minimum=0.0),
))

SCHEDULE_FREE_ADAMW = Section("optimizer.schedule_free_adamw",
                              "Schedule-free AdamW (Defazio et al. 2024, Algorithm 1)", dict(
    b1=unit_interval(0.9, "interpolation between the averaged and the SGD iterate"),
    b2=unit_interval(0.999, "second-moment decay"),
    eps=Field(1e-8, "added to sqrt(v_hat)", minimum=0.0),
    weight_decay=Field(0.0, "decoupled weight decay", minimum=0.0),
    weight_lr_power=Field(2.0, "the average's weights go as lr^weight_lr_power"),
))

ADOPT = Section("optimizer.adopt", "ADOPT (Taniguchi et al. 2024)", dict(
    b1=unit_interval(0.9, "first-moment decay"),
    b2=unit_interval(0.9999, "second-moment decay"),
    eps=Field(1e-6, "added to sqrt(v)", minimum=0.0),
    weight_decay=Field(0.0, "decoupled weight decay", minimum=0.0),
))

SECTIONS = (ADAMW, SGD, LION, SIGNUM, ADAFACTOR, MUON, SCHEDULE_FREE_ADAMW, ADOPT)
