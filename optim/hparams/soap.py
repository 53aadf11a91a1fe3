"""Hyperparameters of SOAP (optim/soap.py; Vyas et al. 2024), the reference's defaults."""
from core.fields import Field, Section, positive, unit_interval
from optim.hparams.from_optax import ADAM_LIKE_SEARCH

PRECISIONS = ("highest", "high", "default")
BLOCK_UPDATES = ("auto", "map", "vmap")

SOAP = Section("optimizer.soap", "SOAP (Vyas et al. 2024): Adam in Shampoo's eigenbasis on the "
                                 "hidden matrices, AdamW on the rest", dict(
    b1=unit_interval(0.95, "first-moment decay", grid=(0.9, 0.95, 0.99)),
    b2=unit_interval(0.95, "second-moment decay (in the eigenbasis)", grid=(0.95, 0.99, 0.999)),
    shampoo_beta=Field(-1.0, "decay of the Shampoo factors; < 0: b2", below=1.0),
    eps=positive(1e-8, "added to sqrt(V)", grid=(1e-10, 1e-8, 1e-6)),
    weight_decay=Field(0.01, "decoupled weight decay after the step, scaled by the lr",
                       minimum=0.0, grid=(0.0, 0.01, 0.1, 0.3)),
    precondition_frequency=Field(10, "steps between eigenbasis refreshes (power iteration + "
                                     "QR)", minimum=1, grid=(1, 10, 30)),
    max_precond_dim=Field(10000, "dims larger than this are not rotated", minimum=1),
    merge_dims=Field(False, "merge small dims of >= 2-D tensors before preconditioning"),
    precondition_1d=Field(False, "rotate 1-D parameters too"),
    normalize_grads=Field(False, "divide the direction by its RMS"),
    correct_bias=Field(True, "Adam's bias correction sqrt(1 - b2^t) / (1 - b1^t)"),
    block_size=Field(0, "> 0: a block-diagonal preconditioner of blocks this long along every "
                        "dim (levanter: 256); 0: one per matrix (the reference)", minimum=0),
    precision=Field("highest", "matmul precision of the rotations and statistics",
                    choices=PRECISIONS),
    block_update=Field("auto", "how equal blocks' eigenbases update: map (one after another), "
                               "vmap (together); auto: map on CPU, vmap elsewhere",
                       choices=BLOCK_UPDATES),
    rest_lr_multiplier=Field(1.0, "lr multiplier of the AdamW part (embeddings, norms, biases)",
                             minimum=0.0, grid=(0.1, 0.3, 1.0)),
), search=ADAM_LIKE_SEARCH)

SECTIONS = (SOAP,)
