"""Hyperparameters of NorMuon (optim/normuon.py; Li et al. 2025), the reference's defaults
(zichongli5/NorMuon, normuon.py: SingleDeviceNorMuonWithAuxAdam)."""
from core.fields import Field, Section, positive, unit_interval
from optim.hparams.from_optax import ORTHOGONAL_SEARCH

NORMUON = Section("optimizer.normuon", "NorMuon (Li et al. 2025): Muon with a per-neuron second "
                                       "moment of the orthogonalised update, AdamW on the rest",
                  dict(
    beta=unit_interval(0.95, "momentum decay (the reference's `momentum`)",
                       grid=(0.9, 0.95, 0.98)),
    beta2=unit_interval(0.95, "decay of the per-neuron second moment of the orthogonalised "
                              "update", grid=(0.9, 0.95, 0.99)),
    ns_steps=Field(5, "Newton-Schulz iterations", minimum=1),
    nesterov=Field(True, "Nesterov momentum (the reference: always)"),
    weight_decay=Field(0.0, "decoupled weight decay of the matrices, scaled by the lr "
                            "(p <- p (1 - lr wd) before the step)", minimum=0.0,
                       grid=(0.0, 0.01, 0.1)),
    adam_b1=unit_interval(0.9, "AdamW part: first-moment decay"),
    adam_b2=unit_interval(0.95, "AdamW part: second-moment decay"),
    adam_eps=positive(1e-10, "AdamW part: added to sqrt(v_hat)"),
    adam_weight_decay=Field(0.0, "AdamW part: decoupled weight decay", minimum=0.0),
    adam_lr_multiplier=Field(0.015, "AdamW part: lr multiplier (the reference's default lrs: "
                                    "3e-4 / 0.02)", minimum=0.0,
                             grid=(0.015, 0.05, 0.15, 0.5)),
),
    # The update keeps the orthogonalised momentum's Frobenius norm (singular values ~1): its RMS
    # is ~1 / sqrt(fan_in) after the sqrt(max(1, out / in)) scale, 0.05-0.18 at widths 32-96
    # (fan_in up to 4x the width), against ~0.2-1 for Adam's elementwise update; so its lr
    # sits above AdamW's, around the published 0.02 (the reference's default): Muon's grid.
    search=ORTHOGONAL_SEARCH)

SECTIONS = (NORMUON,)
