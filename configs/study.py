"""Presets of the optimizer-comparison scaling study (python -m lm.study --preset=NAME).

    tiny   the README's main job: 4 sizes from 25K to 330K non-embedding parameters, byte-level,
           300 steps of 16 x 64 tokens; ~14 minutes on 2 CPU cores
    small  4 quickstart-sized models (0.1M to 1.8M non-embedding parameters, 4096-token BPE,
           4000 steps of 16 x 128 tokens, 4.6 tokens per parameter for the largest, under one
           epoch of en_docs): hours on a CPU, well under an hour on one GPU
    paper  the seed papers' range, 3M to 200M non-embedding parameters (d256_l4 .. d1024_l16,
           8192-token BPE, 16000 steps of 256 x 1024 tokens: 21 tokens per parameter of the
           largest): accelerators only; lm.study writes launch_tpu.sh commands instead of
           training. The embedded corpora hold ~10M BPE tokens each, so these 4.2B tokens would
           repeat them ~400 times: register a web-scale corpus in data/corpora.py first.

Every run of a preset shares its base config and its step count (a Kaplan-style ladder: sizes
differ at equal data, and the learning curves of all sizes give the compute frontier). AdamW
also trains at `data_multipliers` x those steps for the effective-data speedup (Wen et al. 2025
fit AdamW's loss against data at 1-8x), and the code ladder repeats AdamW's runs on the code
corpus for the loss-to-loss fits (Brandfonbrener et al. 2024 pair models by size and data).
"""
import ml_collections

from configs import base

OPTIMIZERS = ("adamw", "soap", "simplified_ademamix")
# Four lrs a half-decade apart around each optimizer's scale for the tiny ladder (widths 32-96,
# 1024-token batches); larger presets divide them by `lr_divisor`. Simplified-AdEMAMix sums
# ~1 / (1 - b1) = 100 gradients in its momentum, so its lr is ~10x smaller than Adam's (Morwani
# et al. 2025); a first tiny study over 1e-4..3e-3 chose 1e-4 or 3e-4 at every size, so its grid
# starts at 3e-5. Sign-based optimizers take ~10x smaller steps than Adam (Chen et al. 2023).
ADAM_LIKE = (1e-3, 3e-3, 1e-2, 3e-2)
LR_GRIDS = {
    **{name: ADAM_LIKE for name in ("adamw", "shampoo", "adalayer", "adopt", "adafactor",
                                    "ademamix", "schedule_free_adamw", "sophia", "muon")},
    "soap": (3e-3, 1e-2, 3e-2, 1e-1),
    "simplified_ademamix": (3e-5, 1e-4, 3e-4, 1e-3),
    "lion": (1e-4, 3e-4, 1e-3, 3e-3),
    "signum": (1e-4, 3e-4, 1e-3, 3e-3),
    "sgd": (1e-2, 3e-2, 1e-1, 3e-1),
}
# Optimizer schedules that span the run, set to each run's step count: the AdEMAMix paper warms
# b3 and alpha up over the whole run, and Simplified-AdEMAMix's b1 warmup is the same schedule
# (in 300-step tiny runs b1 = 0.99 from step 1 ends at 3.27 nats on d32_l2, warmed up 2.96).
RUN_LENGTH_FIELDS = ("optimizer.ademamix.b3_warmup", "optimizer.ademamix.alpha_warmup",
                     "optimizer.simplified_ademamix.b1_warmup")
PRESETS = ("tiny", "small", "paper")


def get_preset(name: str) -> ml_collections.ConfigDict:
    """The study's settings: `run` (the base run config every run starts from), the prose
    ladder `sizes`, the `code_sizes`, `optimizers` and their `lr_grids`, the shared `steps`,
    AdamW's extra `data_multipliers`, `evals` per run, `bootstrap` resamples of each fit and
    the default local `processes`."""
    if name not in PRESETS:
        raise ValueError(f"unknown study preset {name!r}; use one of {', '.join(PRESETS)}")
    return {"tiny": _tiny, "small": _small, "paper": _paper}[name]()


def _study(run, sizes, steps, *, code_sizes=None, bootstrap=1000, processes=1, evals=8,
           lr_divisor=1.0):
    return ml_collections.ConfigDict(dict(
        run=run, sizes=list(sizes), code_sizes=list(code_sizes or sizes),
        prose=run.data.corpus, code="code_py", optimizers=list(OPTIMIZERS),
        lr_grids={name: [lr / lr_divisor for lr in grid] for name, grid in LR_GRIDS.items()},
        run_length_fields=list(RUN_LENGTH_FIELDS),
        steps=steps, data_multipliers=[0.5, 2.0], evals=evals, bootstrap=bootstrap,
        processes=processes))


def _run_config(tokenizer: str, vocab_size: int, seq_len: int, batch_size: int,
                eval_batches: int):
    c = base.get_config()
    c.data.update(dict(corpus="en_docs", eval_corpora=("en_docs", "code_py"),
                       tokenizer=tokenizer, vocab_size=vocab_size, seq_len=seq_len,
                       eval_batches=eval_batches))
    c.model.max_seq_len = seq_len
    c.train.update(dict(batch_size=batch_size, log_every=10, layer_stats_every=0))
    return c


def _tiny():
    run = _run_config("byte", 0, seq_len=64, batch_size=16, eval_batches=4)
    return _study(run, ["d32_l2", "d48_l2", "d64_l2", "d96_l3"], steps=300, bootstrap=200,
                  processes=2)


def _small():
    run = _run_config("bpe", 4096, seq_len=128, batch_size=16, eval_batches=8)
    return _study(run, ["d64_l2", "d96_l3", "d128_l4", "d192_l4"], steps=4000, bootstrap=1000,
                  lr_divisor=3)


def _paper():
    run = _run_config("bpe", 8192, seq_len=1024, batch_size=256, eval_batches=16)
    run.mesh.update(dict(data=1, fsdp=-1))
    return _study(run, ["d256_l4", "d384_l6", "d512_l8", "d768_l12", "d1024_l16"],
                  steps=16000, bootstrap=1000, lr_divisor=10)
