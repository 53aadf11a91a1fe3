"""Optimizers, learning-rate schedules and weight-decay masks for optiscale.

    optimizer = optim.build_optimizer(config.optimizer, config.schedule, config.train.steps)
    optimizer.tx        # optax.GradientTransformation
    optimizer.schedule  # step -> learning rate
"""
from optim import adamw  # noqa: F401  (each optimizer module registers itself on import)
from optim.masks import weight_decay_mask
from optim.registry import build_optimizer, registered_optimizers
from optim.schedules import make_schedule

__all__ = ["build_optimizer", "make_schedule", "registered_optimizers", "weight_decay_mask"]
