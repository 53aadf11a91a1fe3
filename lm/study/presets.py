"""Presets of the optimizer-comparison study (python -m lm.study --preset=NAME).

    tiny     the README's main job (<= 15 min on 2 CPU cores): byte-level models of 25K-222K
             non-embedding parameters, 300 steps of 16 x 64 tokens. Every optimizer's key
             hyperparameters are tuned by coordinate descent at d48_l2, the other sizes re-tune
             the lr around that point, 3 seeds at d48_l2, AdamW at 0.25-2x data. The sizes see
             the same tokens (12 -> 1.4 tokens per parameter), so scale trends are not claims.
    compare  the protocol in full (hours to days on a CPU) over the field's optimizer set
             (COMPARE_OPTIMIZERS): 20 tokens per non-embedding parameter at every size,
             coordinate descent over every hyperparameter of every optimizer at the two
             smallest sizes (the others re-tune the lr), 3 seeds there, AdamW at 1-8x data
             with the lr re-tuned at each size and budget, speedup against N with its slope.
    cbs      the critical batch size as Zhang et al. 2024 measure it: constant lr with
             exponential weight averaging, the lr tuned per batch size, steps to a fixed loss.
    small    `tiny`'s design on quickstart-sized BPE models (hours on a CPU).
    paper    the seed papers' range (3M-200M non-embedding parameters); writes launch_tpu.sh
             commands instead of training.

The protocol follows Wen et al. 2025 ("Fantastic Pretraining Optimizers and Where to Find
Them"): tune every hyperparameter of every optimizer the same way before comparing, measure the
seed noise and count a change only if it beats it, and compute speedups per model size from
AdamW's fitted loss-vs-data curve, inside its measured budgets.
"""
import ml_collections

from lm.train.settings import run_config
from optim.hparams import HYPERPARAMETERS

OPTIMIZERS = ("adamw", "soap", "simplified_ademamix")
# The compare preset's set: the optimizers Wen et al. 2025 tune and compare (AdamW, NAdamW, MARS,
# Cautious, Lion, Adam-mini, Muon, Scion, Kron, SOAP, Sophia), Dion and NorMuon, and
# Simplified-AdEMAMix (this project's third).
COMPARE_OPTIMIZERS = ("adamw", "nadamw", "mars", "cautious_adamw", "lion", "adam_mini",
                      "muon", "scion", "kron", "soap", "sophia", "dion", "normuon",
                      "simplified_ademamix")
PRESETS = ("tiny", "compare", "cbs", "small", "paper")



def search_spaces() -> dict:
    """Search spaces from the optimizers' definitions (optim/hparams/, or a user's module's
    Section: each hyperparameter's ordered grid and start value, and the protocol keys `lr`,
    `warmup` (fraction of the steps) and `grad_clip`), at the tiny scale (widths 32-96,
    1024-token batches; larger presets divide the lrs by `lr_divisor`). Only optimizers whose
    definition has an lr grid can be tuned; --search=FILE adds or changes spaces
    (lm/study/overrides.py)."""
    return {name: space for name, space in
            ((name, section.search_space()) for name, section in HYPERPARAMETERS.items())
            if "lr" in space["grids"]}


# The tiny preset's budget: the hyperparameters the review found mistuned (AdamW's b2, warmup and
# weight decay; SOAP's weight decay and the lr of its AdamW part; S-AdEMAMix's alpha and b1).
TINY_KEYS = {"adamw": ("lr", "b2", "weight_decay", "warmup"),
             "soap": ("lr", "b2", "weight_decay", "rest_lr_multiplier"),
             "simplified_ademamix": ("lr", "alpha", "b1")}
# Optimizer schedules that span the run, set to each run's step count (AdEMAMix's b3 and alpha
# warmups; Simplified-AdEMAMix's b1 warmup is the same schedule).
RUN_LENGTH_FIELDS = ("optimizer.ademamix.b3_warmup", "optimizer.ademamix.alpha_warmup",
                     "optimizer.simplified_ademamix.b1_warmup")


def get_preset(name: str) -> ml_collections.ConfigDict:
    """The study's settings (see `_study` for each field)."""
    if name not in PRESETS:
        raise ValueError(f"unknown study preset {name!r}; use one of {', '.join(PRESETS)}")
    return {"tiny": _tiny, "compare": _compare, "cbs": _cbs, "small": _small,
            "paper": _paper}[name]()


def search_space(space: dict, keys=None, lr_divisor: float = 1.0) -> dict:
    """An optimizer's search `space` restricted to `keys` (None: all), lrs divided by
    `lr_divisor`."""
    keys = tuple(space["grids"]) if keys is None else keys
    grids = {k: list(space["grids"][k]) for k in keys}
    start = {k: space["start"][k] for k in keys}
    grids["lr"] = [lr / lr_divisor for lr in grids["lr"]]
    start["lr"] /= lr_divisor
    return dict(grids=grids, start=start, line=[k for k in space.get("line", ()) if k in keys])


def _study(run, sizes, *, tune_sizes, steps=0, tokens_per_param=0.0, keys=None, max_moves=20,
           seeds=2, seed_sizes=None, data_multipliers=(2.0, 4.0, 8.0), budget_sizes=None,
           anneal_fractions=(0.5, 0.75), code_sizes=None, bootstrap=1000, processes=1,
           evals=8, lr_divisor=1.0, optimizers=OPTIMIZERS):
    return ml_collections.ConfigDict(dict(
        kind="compare",
        run=run,                  # the base run config every run starts from
        sizes=list(sizes),        # the ladder (lm/model/ladder.py)
        steps=steps,              # train steps of every run at 1x data (0: tokens_per_param)
        tokens_per_param=tokens_per_param,  # > 0: steps = this x N_non-embedding / batch tokens
        tune_sizes=list(tune_sizes),  # coordinate descent here; other sizes re-tune the lr only
        optimizers=list(optimizers),  # tuned and compared (--optimizers replaces them)
        search={name: search_space(space, (keys or {}).get(name), lr_divisor)
                for name, space in search_spaces().items()},
        max_moves=max_moves,      # coordinate-descent moves per optimizer and size
        noise_seeds=2,            # extra seeds of AdamW's start point: the tuning threshold
        seeds=seeds,              # extra seeds of every tuned point, at seed_sizes
        seed_sizes=list(seed_sizes or tune_sizes),
        data_multipliers=list(data_multipliers),  # AdamW's other budgets, lr re-tuned at each
        budget_sizes=list(budget_sizes or tune_sizes),
        anneal_fractions=list(anneal_fractions),  # shortened, annealed runs: steps to target
        prose=run.data.corpus, code="code_py",
        code_sizes=list(code_sizes or sizes),  # AdamW on code: the loss-to-loss pairs
        run_length_fields=list(RUN_LENGTH_FIELDS),
        evals=evals,              # validations per run
        bootstrap=bootstrap,      # resamples of each fit
        processes=processes))     # local runs at once (default; --processes)


def _run_config(tokenizer: str, vocab_size: int, seq_len: int, batch_size: int,
                eval_batches: int):
    c = run_config()
    c.data.update(dict(corpus="en_docs", eval_corpora=("en_docs", "code_py"),
                       tokenizer=tokenizer, vocab_size=vocab_size, seq_len=seq_len,
                       eval_batches=eval_batches))
    c.model.max_seq_len = seq_len
    c.train.update(dict(batch_size=batch_size, log_every=10, layer_stats_every=0))
    c.schedule.warmup_fraction = 0.1
    return c


def _tiny():
    run = _run_config("byte", 0, seq_len=64, batch_size=16, eval_batches=4)
    return _study(run, ["d32_l2", "d48_l2", "d64_l2", "d96_l2"], tune_sizes=["d48_l2"],
                  steps=300, keys=TINY_KEYS, max_moves=1, data_multipliers=(0.25, 0.5, 2.0),
                  evals=6, bootstrap=100, processes=2)


def _compare():
    run = _run_config("byte", 0, seq_len=64, batch_size=16, eval_batches=4)
    sizes = ["d32_l2", "d48_l2", "d64_l2", "d96_l2"]
    return _study(run, sizes, tune_sizes=sizes[:2], budget_sizes=sizes, tokens_per_param=20.0,
                  processes=2, optimizers=COMPARE_OPTIMIZERS)


def _small():
    run = _run_config("bpe", 4096, seq_len=128, batch_size=16, eval_batches=8)
    return _study(run, ["d64_l2", "d96_l3", "d128_l4", "d192_l4"], tune_sizes=["d96_l3"],
                  steps=4000, keys=TINY_KEYS, max_moves=2, data_multipliers=(0.5, 2.0),
                  lr_divisor=3)


def _paper():
    run = _run_config("bpe", 8192, seq_len=1024, batch_size=256, eval_batches=16)
    run.mesh.update(dict(data=1, fsdp=-1))
    return _study(run, ["d256_l4", "d384_l6", "d512_l8", "d768_l12", "d1024_l16"],
                  tune_sizes=["d256_l4", "d384_l6"], steps=16000, lr_divisor=10)


def _cbs():
    """Zhang et al. 2024: per size, batch sizes x lrs at a constant lr (after a short warmup)
    with EWA of the weights, each batch size on the same tokens (tokens_per_param x N, so the
    small batches take many steps); steps to a fixed target loss on the EWA weights."""
    run = _run_config("byte", 0, seq_len=64, batch_size=16, eval_batches=4)
    run.schedule.update(dict(name="constant", warmup_fraction=0.05))
    run.optimizer.weight_average_decay = 0.99
    return ml_collections.ConfigDict(dict(
        kind="cbs", run=run, optimizers=["adamw"],
        sizes=["d32_l2", "d48_l2", "d64_l2"],
        batch_sizes=[4, 8, 16, 32, 64],   # sequences of run.data.seq_len tokens
        lrs=[3e-3, 1e-2, 3e-2],           # tuned per (size, batch size)
        tokens_per_param=20.0,            # tokens of every run: this x N_non-embedding
        evals=40,                         # validations per run: the steps-to-target resolution
        prose=run.data.corpus, code="code_py", run_length_fields=list(RUN_LENGTH_FIELDS),
        bootstrap=1000, processes=2))
