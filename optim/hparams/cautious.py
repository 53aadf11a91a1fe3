"""Hyperparameters of the Cautious optimizers (Liang et al. 2024), optim/cautious.py: C-AdamW and
C-Lion take AdamW's and Lion's own fields (their published defaults and grids, one definition)
plus how the kept entries are rescaled."""
from core.fields import Field, Section
from optim.hparams.from_optax import ADAMW, LION

# How the mask is renormalised, per tensor (per layer of a stack): "mean", the reference
# C-AdamW's mask / max(mean(mask), 1e-3); "count", the paper's (Algorithm 1) and the reference
# C-Lion's mask * numel / (sum(mask) + 1).
NORMALIZATIONS = ("mean", "count")


def _normalization(default: str) -> Field:
    return Field(default, "rescaling of the kept entries: mean (1 / max(kept fraction, 1e-3)) "
                          "| count (numel / (kept + 1))", choices=NORMALIZATIONS)


CAUTIOUS_ADAMW = Section(
    "optimizer.cautious_adamw",
    "C-AdamW (Liang et al. 2024): AdamW's step kept where it agrees in sign with the gradient",
    dict(**ADAMW.fields, normalization=_normalization("mean")),
    # The kept entries are scaled up by 1 / (kept fraction) ~ 2 at first, so an Adam-sized
    # step in RMS: AdamW's grids (Wen et al. 2025 found AdamW's lr best for it at 130M-1.2B).
    search=ADAMW.search)

CAUTIOUS_LION = Section(
    "optimizer.cautious_lion",
    "C-Lion (Liang et al. 2024): Lion's sign step kept where it agrees with the gradient",
    dict(**LION.fields, normalization=_normalization("count")),
    search=LION.search)

SECTIONS = (CAUTIOUS_ADAMW, CAUTIOUS_LION)
