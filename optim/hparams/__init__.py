"""Every registered optimizer's hyperparameters, one module per implementation module of optim/
(`optim/hparams/soap.py` defines what `optim/soap.py` implements): each a core.fields.Section
named `optimizer.<name>` whose fields give the defaults, docs and study grids that the
transform's signature, the registry, the config section, `python -m configs.help` and the
study's search space all read. JAX-free, so building a config loads no JAX.
"""
from core.fields import Section
from optim.hparams import (
    adalayer,
    adam_mini,
    ademamix,
    cautious,
    dion,
    from_optax,
    kron,
    mars,
    normuon,
    scion,
    shampoo,
    soap,
    sophia,
)

_MODULES = (from_optax, soap, shampoo, ademamix, adalayer, sophia, cautious, mars, adam_mini,
            scion, kron, dion, normuon)

# optimizer name -> its hyperparameters.
HYPERPARAMETERS: dict[str, Section] = {
    section.name.removeprefix("optimizer."): section
    for module in _MODULES for section in module.SECTIONS}

# optimizer name -> the module of optim/ whose @register builds it.
IMPLEMENTATIONS: dict[str, str] = {
    section.name.removeprefix("optimizer."): "optim." + module.__name__.rsplit(".", 1)[1]
    for module in _MODULES for section in module.SECTIONS}
