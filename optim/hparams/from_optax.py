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

# SGD's step is lr x the (clipped) gradient summed over ~1 / (1 - momentum) steps, with no
# per-coordinate normalisation: its lr sits far above Adam's. Zhao et al. 2024 tune its lr and
# momentum (SGD is the one optimizer they find lagging and unstable in lr). At the tiny scale
# (d48_l2, 300 steps, the starts) lr 0.1 / 0.3 / 1 / 3 reached 2.90 / 2.81 / 3.03 / 3.57 (AdamW
# at its start: 2.61).
SGD_SEARCH = dict(ADAM_LIKE_SEARCH, lr=((0.03, 0.1, 0.3, 1.0, 3.0), 0.3))

SGD = Section("optimizer.sgd", "SGD with heavy-ball or Nesterov momentum (Sutskever et al. 2013)",
              dict(
    momentum=unit_interval(0.9, "momentum; 0: plain SGD", grid=(0.8, 0.9, 0.95, 0.98)),
    nesterov=Field(False, "Nesterov momentum"),
    weight_decay=Field(0.0, "L2-style decay added to the gradient", minimum=0.0),
), search=SGD_SEARCH)

# Lion's step is a sign (every entry +-lr): the paper's lr is 3-10x smaller than AdamW's.
LION_SEARCH = dict(ADAM_LIKE_SEARCH, lr=((1e-4, 3e-4, 1e-3, 3e-3, 1e-2), 1e-3))

LION = Section("optimizer.lion", "Lion (Chen et al. 2023, Algorithm 2)", dict(
    b1=unit_interval(0.9, "interpolation of momentum and gradient for the sign",
                     grid=(0.9, 0.95)),
    b2=unit_interval(0.99, "momentum decay", grid=(0.95, 0.98, 0.99)),
    weight_decay=Field(0.1, "decoupled weight decay (the paper: 3-10x AdamW's)", minimum=0.0,
                       grid=(0.0, 0.1, 0.3, 1.0)),
), search=LION_SEARCH)

# Signum's step is a sign, as Lion's (Zhao et al. 2024 find it matches Adam and Lion in loss and
# in lr stability): Lion's grids; its momentum b1 is what Zhao et al. tune with the lr. At the
# tiny scale (d48_l2, 300 steps, the starts) lr 3e-4 / 1e-3 / 3e-3 reached 3.42 / 2.75 / 2.82.
SIGNUM = Section("optimizer.signum", "Signum (Bernstein et al. 2018): sign of a gradient EMA",
                 dict(
    b1=unit_interval(0.9, "gradient EMA decay", grid=(0.8, 0.9, 0.95, 0.98)),
    weight_decay=Field(0.0, "decoupled weight decay", minimum=0.0, grid=(0.0, 0.1, 0.3, 1.0)),
), search=LION_SEARCH)

# Adam-like steps whose best lr at the tiny scale sat 3x below AdamW's (Adafactor, ADOPT; the
# losses measured are by their definitions): AdamW's lr grid half a decade lower.
LOWER_LR_SEARCH = dict(ADAM_LIKE_SEARCH, lr=((3e-4, 1e-3, 3e-3, 1e-2, 3e-2), 3e-3))

# With multiply_by_parameter_scale off, Adafactor's lr is an absolute step of an Adam-like
# (RMS-normalised, clipped) update. The paper's decay rate 0.8 and clipping threshold d = 1 are
# the starts, between a faster-forgetting 0.5 and the plain running mean (1: 1 - 1/t), and half
# and twice d; momentum starts at the paper's 0 (Zhao et al. 2024 run it with b1 = 0.9). At the
# tiny scale (d48_l2, 300 steps, the starts) lr 1e-3 / 3e-3 / 1e-2 / 3e-2 reached 2.97 / 2.74 /
# 2.94 / 3.00 (AdamW at its start: 2.61).
ADAFACTOR = Section("optimizer.adafactor", "Adafactor (Shazeer & Stern 2018)", dict(
    decay_rate=Field(0.8, "exponent of the second-moment decay schedule 1 - t^-decay_rate",
                     grid=(0.5, 0.8, 1.0)),
    clipping_threshold=Field(1.0, "update clipping threshold d", minimum=0.0,
                             grid=(0.5, 1.0, 2.0)),
    momentum=unit_interval(0.0, "first-moment decay; 0: the paper's momentum-free variant",
                           grid=(0.0, 0.9, 0.95)),
    multiply_by_parameter_scale=Field(False, "scale the update by the parameter RMS (off: lr is "
                                             "an absolute step size as in AdamW)"),
    weight_decay=Field(0.0, "decay p <- p - wd p, not scaled by the lr", minimum=0.0),
    min_dim_size_to_factor=Field(128, "factor second moments of dims at least this large",
                                 minimum=1),
), search=LOWER_LR_SEARCH)

# Muon's matrix step is orthogonal (spectral norm ~lr): Jordan et al. use lr 0.02-0.05, ~10x
# AdamW's; the AdamW part runs at adam_lr_multiplier x lr.
ORTHOGONAL_SEARCH = dict(ADAM_LIKE_SEARCH, lr=((3e-3, 1e-2, 2e-2, 5e-2, 1e-1), 2e-2))

MUON = Section("optimizer.muon", "Muon (Jordan et al. 2024): orthogonalised momentum on weight "
                                 "matrices, AdamW on the rest", dict(
    beta=unit_interval(0.95, "momentum decay", grid=(0.9, 0.95, 0.98)),
    ns_steps=Field(5, "Newton-Schulz iterations", minimum=1),
    nesterov=Field(True, "Nesterov momentum"),
    weight_decay=Field(0.0, "decoupled weight decay of the matrices", minimum=0.0,
                       grid=(0.0, 0.01, 0.1)),
    adam_b1=unit_interval(0.9, "AdamW part: first-moment decay"),
    adam_b2=unit_interval(0.95, "AdamW part: second-moment decay"),
    adam_weight_decay=Field(0.0, "AdamW part: decoupled weight decay", minimum=0.0),
    adam_lr_multiplier=Field(1.0, "AdamW part: lr multiplier", minimum=0.0,
                             grid=(0.1, 0.3, 1.0)),
), search=ORTHOGONAL_SEARCH)

# Schedule-free AdamW steps as Adam does; Defazio et al. (github.com/facebookresearch/
# schedule_free, README) find its best lr 1-10x a scheduled AdamW's and recommend a warmup (the
# warmup grid holds no 0), and name b1 the knob of longer runs (0.9, else 0.95 or 0.98). At the
# tiny scale (d48_l2, 300 steps, the starts, the study's cosine schedule) lr 3e-3 / 1e-2 / 3e-2
# reached 2.73 / 2.69 / 3.06: AdamW's grids.
SCHEDULE_FREE_ADAMW = Section("optimizer.schedule_free_adamw",
                              "Schedule-free AdamW (Defazio et al. 2024, Algorithm 1)", dict(
    b1=unit_interval(0.9, "interpolation between the averaged and the SGD iterate",
                     grid=(0.9, 0.95, 0.98)),
    b2=unit_interval(0.999, "second-moment decay"),
    eps=Field(1e-8, "added to sqrt(v_hat)", minimum=0.0),
    weight_decay=Field(0.0, "decoupled weight decay", minimum=0.0, grid=(0.0, 0.1, 0.3)),
    weight_lr_power=Field(2.0, "the average's weights go as lr^weight_lr_power"),
), search=ADAM_LIKE_SEARCH)

# ADOPT's step is Adam-sized (a momentum of gradients normalised by the previous second
# moment), its grids around the paper's b2 0.9999 and eps 1e-6. Its v is not bias-corrected
# but starts at the first squared gradient, so at b2 0.9999 a 300-step run normalises by about
# that first gradient: the b2 grid reaches down to Adam's values. At the tiny scale (d48_l2,
# 300 steps, the starts) lr 1e-3 / 3e-3 / 1e-2 / 3e-2 reached 2.77 / 2.58 / 2.74 / 2.95
# (AdamW at its start: 2.61).
ADOPT = Section("optimizer.adopt", "ADOPT (Taniguchi et al. 2024)", dict(
    b1=unit_interval(0.9, "first-moment decay", grid=(0.8, 0.9, 0.95)),
    b2=unit_interval(0.9999, "second-moment decay", grid=(0.95, 0.99, 0.999, 0.9999)),
    eps=Field(1e-6, "added to sqrt(v)", minimum=0.0, grid=(1e-8, 1e-6, 1e-4)),
    weight_decay=Field(0.0, "decoupled weight decay", minimum=0.0, grid=(0.0, 0.1, 0.3)),
), search=LOWER_LR_SEARCH)

# AlgoPerf's NAdamW (Dahl et al. 2023) with the setting Wen et al. 2025 tuned for LMs: b1 0.95
# and b2 0.98 were their best at 130M-300M parameters and 1-8x Chinchilla data (b1 0.98 at
# 520M), weight decay 0.1; eps 1e-8 is AlgoPerf's fixed value (Wen et al. found 1e-10 to
# 1e-25 equal). The steps are Adam-sized, so AdamW's lr grid.
NADAMW = Section("optimizer.nadamw", "NAdamW (Dozat 2016; AlgoPerf's baseline): Adam with "
                                     "Nesterov momentum and decoupled weight decay", dict(
    b1=unit_interval(0.95, "first-moment decay (also weights the Nesterov look-ahead)",
                     grid=(0.9, 0.95, 0.98)),
    b2=unit_interval(0.98, "second-moment decay", grid=(0.95, 0.98, 0.999)),
    eps=Field(1e-8, "added to sqrt(v_hat)", minimum=0.0, grid=(1e-10, 1e-8, 1e-6)),
    weight_decay=Field(0.1, "decoupled weight decay, scaled by the lr (PyTorch convention)",
                       minimum=0.0, grid=(0.0, 0.1, 0.3)),
), search=ADAM_LIKE_SEARCH)

SECTIONS = (ADAMW, SGD, LION, SIGNUM, ADAFACTOR, MUON, SCHEDULE_FREE_ADAMW, ADOPT, NADAMW)
