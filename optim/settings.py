"""The optimizer and schedule settings (`config.optimizer`, `config.schedule`), defined once
(core/fields.py): the keys every optimizer shares, and one section per registered optimizer
from optim/hparams/. JAX-free, so building a config loads no JAX.
"""
from core.fields import Field, Section, nonnegative, positive
from optim.hparams import HYPERPARAMETERS

SCHEDULES = ("cosine", "wsd", "linear", "constant")

# A parameter group's keys (optim/masks.py): the parameters whose path ("block_0/mlp/up/kernel")
# matches `pattern` (re.search), their lr multiplier and weight decay (True / False / None: the
# default rule, decay iff ndim >= 2). Add groups in a config file, e.g.
# c.optimizer.groups.norms = dict(pattern="norm", lr_multiplier=0.1, weight_decay=None)
# optim/masks.py checks every group, those a config file adds included.
EMBEDDINGS_GROUP = Section("optimizer.groups.embeddings", "the embedding tables", dict(
    pattern=Field("embed", "re.search pattern over parameter paths"),
    lr_multiplier=Field(1.0, "lr multiplier of the group (>= 0)"),
    weight_decay=Field(False, "decay the group (None: decay iff ndim >= 2)"),
))

# The keys every optimizer shares (optim.registry.build checks them; the registry names the
# optimizers, optim/weight_average.py the averaging decay's range, optim/masks.py the groups).
SHARED = Section("optimizer", "the keys every optimizer shares", dict(
    name=Field("adamw", "a registered optimizer (optim/hparams/, or registered with its own "
                        "hyperparameters)"),
    lr=positive(3e-3, "peak learning rate"),
    grad_clip=nonnegative(1.0, "global-norm clipping (Pascanu et al. 2013); 0 disables"),
    weight_average_decay=Field(0.0, "in (0, 1): evaluate an exponential moving average of the "
                                    "parameters, xi <- d xi + (1 - d) theta after each step "
                                    "(Zhang et al. 2024 pair it with a constant lr); 0: off"),
    groups=Section("optimizer.groups", "parameter groups: name -> pattern, lr_multiplier, "
                                       "weight_decay", dict(embeddings=EMBEDDINGS_GROUP)),
))



def optimizer_section() -> Section:
    """`config.optimizer`: the shared keys and one section per registered optimizer, those a
    user's module registered with its own hyperparameters (core/user_modules.py) included."""
    return Section("optimizer", "the update rule", {
        **SHARED.fields, **{name: section for name, section in sorted(HYPERPARAMETERS.items())}})


SCHEDULE = Section("schedule", "the learning-rate schedule (optim/schedules.py)", dict(
    name=Field("cosine", "cosine | wsd | linear | constant", choices=SCHEDULES),
    warmup_steps=Field(100, "linear warmup from 0 to optimizer.lr", minimum=0),
    warmup_fraction=Field(0.0, "> 0: warm up over this fraction of train.steps instead of "
                               "warmup_steps (a sweep over run lengths keeps the shape)",
                          minimum=0.0, below=1.0),
    final_lr_fraction=Field(0.1, "lr at the end, as a fraction of the peak", minimum=0.0,
                            maximum=1.0),
    decay_fraction=Field(0.2, "wsd: share of the steps spent decaying", minimum=0.0,
                         maximum=1.0),
))
