"""Hyperparameters of Dion (Ahn et al. 2025, optim/dion.py): the reference class's defaults
(microsoft/dion, dion/dion_reference.py) for the matrix part, its training script's (train.py)
for the scalar optimizer of the rest."""
from core.fields import Field, Section, nonnegative, positive, unit_interval
from optim.hparams.from_optax import ORTHOGONAL_SEARCH
from optim.hparams.soap import PRECISIONS

SCALAR_OPTS = ("adamw", "lion")

DION = Section("optimizer.dion", "Dion (Ahn et al. 2025): low-rank orthonormal updates by power "
                                 "iteration with error feedback on the hidden matrices, AdamW "
                                 "or Lion on the rest", dict(
    mu=unit_interval(0.95, "momentum decay: M keeps all but (1 - mu) of what the rank-r "
                           "approximation captured", grid=(0.9, 0.95, 0.98)),
    rank_fraction=Field(1.0, "rank r = rank_fraction * min(in, out) of the update (1: full "
                             "rank, Muon-like; the authors use 0.25-0.5 from ~100M parameters)",
                        above=0.0, maximum=1.0, grid=(0.25, 0.5, 1.0)),
    rank_multiple_of=positive(1, "round r up to a multiple of this"),
    power_iters=positive(1, "power iterations per step (the paper: 1, warm-started from Q)"),
    eps=positive(1e-8, "added to the column norms of R (new Q) and, in AdamW, to sqrt(v_hat)"),
    weight_decay=Field(0.01, "decoupled weight decay, scaled by the lr, on the parameters the "
                             "decay mask selects (both parts)", minimum=0.0,
                       grid=(0.0, 0.01, 0.1)),
    seed=nonnegative(0, "seed of the initial right factors Q (one draw per (side, rank) shape)"),
    precision=Field("highest", "matmul precision of the power iteration (the reference: "
                               "float32)", choices=PRECISIONS),
    scalar_opt=Field("adamw", "optimizer of embeddings, norms and biases (the authors' 160M "
                              "config: adamw; train.py's default: lion, with the untied LM head "
                              "at lr / sqrt(d_model))", choices=SCALAR_OPTS),
    rest_b1=unit_interval(0.95, "AdamW / Lion part: first-moment decay (Lion: interpolation)"),
    rest_b2=unit_interval(0.98, "AdamW / Lion part: second-moment decay (Lion: momentum decay)"),
    rest_lr_multiplier=Field(1.0, "lr multiplier of the AdamW / Lion part", minimum=0.0,
                             grid=(0.1, 0.3, 1.0)),
), search=ORTHOGONAL_SEARCH)

SECTIONS = (DION,)
