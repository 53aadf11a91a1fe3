"""Hyperparameters of Adam-mini (optim/adam_mini.py; Zhang et al. 2024). The authors recommend
AdamW's values (README: "we recommend using the same values as those used for AdamW"); their
GPT-2 pre-training runs use b1=0.9, b2=0.95, eps=1e-8 (examples/gpt2/train_gpt2.py), so the
defaults and grids here are optiscale's AdamW ones. The class defaults of the reference,
Adam_mini(betas=(0.9, 0.999), eps=1e-8, weight_decay=0), are the transform's with b2=0.999 and
weight_decay=0. The head counts come from config.model, not from here."""
from core.fields import Field, Section, unit_interval
from optim.hparams.from_optax import ADAM_LIKE_SEARCH

ADAM_MINI = Section("optimizer.adam_mini", "Adam-mini (Zhang et al. 2024): Adam with one second "
                                           "moment per Hessian block (head, neuron, token)", dict(
    b1=unit_interval(0.9, "first-moment decay", grid=(0.8, 0.9, 0.95)),
    b2=unit_interval(0.95, "decay of the blocks' mean squared gradients",
                     grid=(0.95, 0.99, 0.999)),
    eps=Field(1e-8, "added to sqrt(v_hat)", minimum=0.0, grid=(1e-10, 1e-8, 1e-6)),
    weight_decay=Field(0.1, "decoupled weight decay, scaled by the lr (PyTorch convention)",
                       minimum=0.0, grid=(0.0, 0.1, 0.3)),
    single_value_lr=Field(False, "one second moment for a whole value projection instead of "
                                 "one per neuron (the README's advice for runs under ~10k "
                                 "steps)"),
), search=ADAM_LIKE_SEARCH)

SECTIONS = (ADAM_MINI,)
