"""Hyperparameters of Shampoo (optim/shampoo.py; Gupta et al. 2018, with grafting as in
Distributed Shampoo)."""
from core.fields import Field, Section, unit_interval
from optim.hparams.from_optax import ADAM_LIKE_SEARCH

GRAFTS = ("adam", "sgd")

SHAMPOO = Section("optimizer.shampoo", "Shampoo with layerwise grafting on the hidden matrices, "
                                       "AdamW on the rest", dict(
    b1=unit_interval(0.9, "momentum on the grafted direction"),
    b2=unit_interval(0.95, "EMA decay of the statistics and of the Adam graft's second moment "
                           "(the AdamW part shares it, so < 1 here)"),
    eps=Field(1e-12, "absolute damping added to every statistic before its inverse root",
              minimum=0.0),
    exponent=Field(0.0, "the root e in L^(-1/e); 0: 2 x the number of preconditioned axes",
                   minimum=0.0),
    weight_decay=Field(0.0, "decoupled weight decay, scaled by the lr", minimum=0.0,
                       grid=(0.0, 0.1, 0.3)),
    precondition_frequency=Field(10, "steps between recomputations of the inverse roots",
                                 minimum=1, grid=(1, 10, 30)),
    start_preconditioning_step=Field(1, "first (1-based) step using the Shampoo direction",
                                     minimum=1),
    max_precond_dim=Field(10000, "axes larger than this are not preconditioned", minimum=1),
    graft=Field("adam", "the direction whose per-parameter norm the update takes",
                choices=GRAFTS),
    graft_eps=Field(1e-8, "the Adam graft's epsilon (and the AdamW part's)", minimum=0.0),
    matrix_eps=Field(1e-6, "damping relative to the largest eigenvalue of each statistic",
                     minimum=0.0, grid=(1e-8, 1e-6, 1e-4)),
    statistics_frequency=Field(1, "steps between updates of the statistics", minimum=1),
    rest_lr_multiplier=Field(1.0, "lr multiplier of the AdamW part (embeddings, norms, biases)",
                             minimum=0.0, grid=(0.1, 0.3, 1.0)),
),
    # The Adam graft sets each matrix's step norm, so the steps are Adam-sized: AdamW's lr,
    # warmup and clipping grids, as SOAP's. Of the two dampings the relative matrix_eps is the
    # one that acts (the absolute eps, 1e-12, only keeps an all-zero statistic invertible): its
    # grid is 100x either side of the default. The AdamW part's multiplier and the precondition
    # frequency take SOAP's grids. At the tiny scale (d48_l2, 300 steps, the starts) lr 3e-3 /
    # 1e-2 / 3e-2 reached 2.55 / 2.44 / 2.56 (AdamW at its start: 2.61).
    search=ADAM_LIKE_SEARCH)

SECTIONS = (SHAMPOO,)
