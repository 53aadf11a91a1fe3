"""Optimizers, learning-rate schedules and parameter groups for optiscale.

    schedule = optim.make_schedule(config.schedule, config.optimizer.lr, config.train.steps)
    optimizer = optim.build(config.optimizer, schedule, params)
    optimizer.tx           # optax.GradientTransformation (schedule, weight decay, groups)
    optimizer.schedule     # step -> learning rate
    optimizer.eval_params  # (opt_state, params) -> the parameters to evaluate

Each optimizer's hyperparameters are defined once in optim/hparams/ (JAX-free); the shared
optimizer and schedule settings in optim/settings.py. The custom transforms are also usable
alone, each an optax.GradientTransformation with the learning rate and weight decay included:
`from optim.soap import soap`, likewise optim.shampoo.shampoo, optim.ademamix.ademamix and
simplified_ademamix, optim.adalayer.adalayer, optim.sophia.sophia, optim.from_optax.nadamw,
optim.mars.mars, optim.cautious.cautious_adamw and cautious_lion (optim.cautious.cautious wraps
any optimizer), optim.adam_mini.adam_mini, optim.scion.scion, optim.kron.kron, optim.dion.dion
and optim.normuon.normuon. Each implementation module
registers its optimizers on import (optim/registry.py imports it when `build` needs it).
The names below load on first use, so `import optim.hparams` loads no JAX.
"""
from core import lazy
from core.accelerators import cpu_unless_accelerators

cpu_unless_accelerators()  # before JAX is imported: a CPU machine runs quietly on the CPU

__getattr__, __dir__ = lazy.exports(__name__, {
    "Optimizer": ".registry", "build": ".registry", "build_from_config": ".registry",
    "registered_optimizers": ".registry", "register": ".registry",
    "make_schedule": ".schedules", "lr_multipliers": ".masks", "matrix_mask": ".masks",
    "weight_decay_mask": ".masks"})
