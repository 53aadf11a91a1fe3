"""Hyperparameters of PSGD Kron (optim/kron.py; Li 2015/2018, Kron by Evan Walters), the
defaults of the reference (evanatyourservice/kron_torch, kron.py, class Kron)."""
from core.fields import Field, Section, positive, unit_interval
from optim.hparams.soap import PRECISIONS

MEMORY_SAVE_MODES = ("", "smart_one_diag", "one_diag", "all_diag")
MU_DTYPES = ("", "float32", "bfloat16")
PRECOND_DTYPES = ("float32", "bfloat16")

KRON = Section("optimizer.kron", "PSGD Kron (Li 2018; Walters' kron_torch): momentum "
                                 "preconditioned by fitted Kronecker factors, on every parameter",
               dict(
    b1=unit_interval(0.9, "momentum decay (the momentum is bias-corrected)",
                     grid=(0.9, 0.95, 0.99)),
    weight_decay=Field(0.0, "decoupled weight decay, scaled by the lr (the reference's default "
                            "0; its README: 3-10x AdamW's)", minimum=0.0,
                       grid=(0.0, 0.1, 0.3, 1.0)),
    precond_lr=positive(0.1, "step size of the preconditioner fit (normalised by a bound on "
                             "the fit gradient's norm)", grid=(0.05, 0.1, 0.2)),
    precond_init_scale=positive(1.0, "initial scale of the preconditioner (Q = scale^(1/ndim) "
                                     "I per dim)"),
    update_prob_max=Field(1.0, "preconditioner update probability during the flat start",
                          above=0.0, maximum=1.0),
    update_prob_min=Field(0.03, "preconditioner update probability floor (updates at least "
                                "every ceil(1 / p) steps)", above=0.0, maximum=1.0),
    update_prob_decay=Field(0.001, "rate of the exponential decay of the update probability "
                                   "after the flat start", minimum=0.0),
    update_prob_flat_start=Field(500, "steps at the maximum update probability", minimum=0),
    max_size_triangular=positive(8192, "dims longer than this get a diagonal factor"),
    min_ndim_triangular=positive(2, "tensors of fewer dims get diagonal factors only"),
    memory_save_mode=Field("", "'': all factors triangular; smart_one_diag: the largest dim "
                               "diagonal if larger than the others; one_diag: the largest dim "
                               "diagonal; all_diag", choices=MEMORY_SAVE_MODES),
    momentum_into_precond_update=Field(True, "fit the preconditioner to the debiased momentum "
                                             "(False: to the gradient)"),
    merge_dims=Field(True, "view a > 2-D tensor as the matrix (prod(shape[:-1]), shape[-1])"),
    mu_dtype=Field("", "dtype of the momentum; '': the parameter's", choices=MU_DTYPES),
    precond_dtype=Field("float32", "dtype of the factors and of the preconditioning",
                        choices=PRECOND_DTYPES),
    precision=Field("highest", "matmul precision of the fit and the preconditioning",
                    choices=PRECISIONS),
    seed=Field(0, "seed of the random probe vectors and balancing draws", minimum=0),
),
    # The update is clipped to RMS <= 1.1 and is whitened (unit scale per entry like Adam's);
    # the reference's README starts "around 3x smaller than adam's": AdamW's grid / 3.
    search=dict(lr=((3e-4, 1e-3, 3e-3, 1e-2, 3e-2), 3e-3), warmup=((0.02, 0.1, 0.3), 0.1),
                grad_clip=((0.0, 1.0, 2.0), 1.0)))

SECTIONS = (KRON,)
