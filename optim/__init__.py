"""Optimizers, learning-rate schedules and parameter groups for optiscale.

    optimizer = optim.build_optimizer(config.optimizer, config.schedule, config.train.steps)
    optimizer.tx           # optax.GradientTransformation (schedule and weight decay included)
    optimizer.schedule     # step -> learning rate
    optimizer.eval_params  # (opt_state, params) -> the parameters to evaluate

Each optimizer module registers its optimizers on import (see optim/registry.py).
"""
from optim import (adalayer, ademamix, from_optax, shampoo,  # noqa: F401  (each module
                   soap)                                     # registers its optimizers)
from optim.masks import matrix_mask, weight_decay_mask
from optim.registry import (build_optimizer, mup_lr_scale, optimizer_defaults,
                            registered_optimizers)
from optim.schedules import make_schedule

__all__ = ["build_optimizer", "make_schedule", "matrix_mask", "mup_lr_scale",
           "optimizer_defaults", "registered_optimizers", "weight_decay_mask"]
