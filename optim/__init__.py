"""Optimizers, learning-rate schedules and parameter groups for optiscale.

    schedule = optim.make_schedule(config.schedule, config.optimizer.lr, config.train.steps)
    optimizer = optim.build(config.optimizer, schedule, params)
    optimizer.tx           # optax.GradientTransformation (schedule, weight decay, groups)
    optimizer.schedule     # step -> learning rate
    optimizer.eval_params  # (opt_state, params) -> the parameters to evaluate

The custom transforms are also usable alone, each an optax.GradientTransformation with the
learning rate and weight decay included: optim.soap, optim.shampoo, optim.ademamix,
optim.simplified_ademamix, optim.adalayer, optim.sophia (these names are the functions; their
modules stay importable as `from optim.soap import SoapState`). Each optimizer module
registers its optimizers on import (see optim/registry.py).
"""
from optim import from_optax  # noqa: F401  (registers optax's optimizers)
from optim.adalayer import adalayer
from optim.ademamix import ademamix, simplified_ademamix
from optim.masks import lr_multipliers, matrix_mask, weight_decay_mask
from optim.registry import (
                            Optimizer,
                            build,
                            build_from_config,
                            optimizer_defaults,
                            registered_optimizers,
)
from optim.schedules import make_schedule
from optim.shampoo import shampoo
from optim.soap import soap
from optim.sophia import sophia

__all__ = ["Optimizer", "adalayer", "ademamix", "build", "build_from_config", "lr_multipliers",
           "make_schedule", "matrix_mask", "optimizer_defaults", "registered_optimizers",
           "shampoo", "simplified_ademamix", "soap", "sophia", "weight_decay_mask"]
