"""Hyperparameters of Scion (optim/scion.py; Pethick et al. 2025), the defaults of the authors'
GPT example (LIONS-EPFL/scion, examples/modded-nanogpt/train_gpt_scion.py and the README's
"nanoGPT with weight sharing": radius 50, output radius 50 x 60, momentum 0.1, constrained)."""
from core.fields import Field, Section, positive

NS_DTYPES = ("bfloat16", "param")
INPUT_NORMS = ("colnorm", "sign")

SCION = Section("optimizer.scion", "Scion (Pethick et al. 2025): steps along norm-ball LMOs, "
                                   "spectral on hidden matrices, sign on the output layer", dict(
    momentum=Field(0.1, "weight of the new gradient in d <- (1 - momentum) d + momentum g (the "
                        "reference's convention: 1 - the usual beta); 1: no momentum",
                   above=0.0, maximum=1.0, grid=(0.05, 0.1, 0.3, 0.5)),
    scale=positive(50.0, "radius of the hidden matrices (Spectral LMO, times sqrt(fan_out / "
                         "fan_in)) and of norm scales and biases (BiasRMS)",
                   grid=(12.5, 25.0, 50.0, 100.0)),
    output_scale=positive(3000.0, "radius of the output layer (Sign LMO / fan_in): the tied "
                                  "embedding, or the untied unembed kernel",
                          grid=(750.0, 1500.0, 3000.0, 6000.0)),
    input_scale=positive(50.0, "radius of an untied input embedding (unused when tied)"),
    input_norm=Field("colnorm", "LMO of an untied input embedding: colnorm (each token's row "
                                "to RMS 1) | sign", choices=INPUT_NORMS),
    ns_steps=positive(5, "Newton-Schulz iterations of the Spectral LMO"),
    ns_dtype=Field("bfloat16", "dtype of the Newton-Schulz iteration: bfloat16 (the reference) "
                               "| param (the momentum's, e.g. float32)", choices=NS_DTYPES),
    weight_decay=Field(1.0, "the constrained variant's shrink, p <- (1 - lr wd) p - lr radius "
                            "lmo(d): 1 is the reference's Scion (the radius ball is invariant), "
                            "0 unconstrained Scion; on the parameters optimizer.groups decay",
                       minimum=0.0, grid=(0.0, 1.0)),
),
    # Scion's step is lr x radius x an LMO output of unit norm: the published lr 2^-12 (the
    # README's GPT example; its script uses 3.6e-4) times radius 50 moves a hidden matrix by
    # ~0.012 in the RMS -> RMS operator norm per step, near Muon's scaled step at lr 0.02. The
    # LMOs are width-independent in those norms (the paper's transfer claim), so the grid
    # centres on the published value, in powers of 2 as the authors sweep it. On the quickstart
    # model (30 steps) 2^-12 and 2^-11 are best, 2^-14 and 2^-8.4 (3e-3) lose 0.3-0.5 nats
    # and 1e-2 diverges.
    search=dict(lr=(tuple(2.0 ** k for k in range(-14, -7)), 2.0 ** -12),
                warmup=((0.02, 0.1, 0.3), 0.1), grad_clip=((0.0, 1.0, 2.0), 1.0)))

SECTIONS = (SCION,)
