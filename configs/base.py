"""Defaults of every optiscale config: the single source of each field's default value.

Use directly (`--config=configs/base.py`, or `configs/base.py:d256_l4` for a ladder size) or
from another config file that edits `get_config()`. Every field can be overridden on the command
line: `--config.optimizer.lr=1e-3`.
"""
import ml_collections

from configs import ladder


def data_defaults() -> ml_collections.ConfigDict:
    """The data section (also the defaults of `python -m data.prepare`)."""
    return ml_collections.ConfigDict(dict(
        root="",               # "": $OPTISCALE_DATA_DIR, else ~/.cache/optiscale
        # A source is a registered corpus (python -m data.fetch lists them), a name from
        # data.sources, or jsonl:PATTERN | parquet:PATTERN | text:PATTERN | hf:NAME[:CONFIG[:SPLIT]]
        # (data/sources.py; PATTERN: a glob, local or gs://)
        corpus="en_docs",      # training source (when data.mixture is empty)
        # Weighted mixture of training sources, {source: weight} (weights > 0, normalised):
        # each sequence of a batch comes from source i with probability w_i / sum(w).
        # Replaces data.corpus when set. Command line: --config.data.mixture='{"a": 0.7, ...}'
        mixture=ml_collections.FieldReference({}, field_type=object),
        # Names for sources, {name: source}, usable wherever a source is: e.g.
        # {"fineweb_edu": "hf:HuggingFaceFW/fineweb-edu:sample-10BT"}
        sources=ml_collections.FieldReference({}, field_type=object),
        text_field="text",     # the JSON field / parquet or dataset column holding documents
        eval_corpora=("en_docs", "code_py"),  # one validation set per source
        tokenizer="byte",      # byte (UTF-8 bytes + EOS) | bpe (trained offline with
                               # `tokenizers`) | hf:PATH (a tokenizer.json or its directory)
        vocab_size=8192,       # bpe only
        tokenizer_corpora=("en_docs", "code_py"),  # bpe only: what the tokenizer is trained on
        val_fraction=0.02,     # fraction of documents held out for validation
        workers=0,             # processes that tokenize a source on first use; 0: all cores
        seq_len=256,           # tokens per training sequence (a window holds seq_len + 1)
        eval_batches=8,        # fixed validation windows: eval_batches x eval_batch_size
        eval_batch_size=32,    # sequences per validation batch
    ))


def get_config(size: str = "") -> ml_collections.ConfigDict:
    import optim  # here, not at the top: data.prepare's workers read data_defaults without JAX

    c = ml_collections.ConfigDict()

    c.model = ml_collections.ConfigDict(dict(
        vocab_size=0,          # 0: the tokenizer's vocabulary size; larger pads the
                               # embedding (e.g. to a multiple of mesh.tensor)
        d_model=128,           # model width
        n_layers=4,            # transformer blocks
        n_heads=4,             # attention heads
        n_kv_heads=0,          # 0: = n_heads (multi-head); fewer: grouped-query attention
        head_dim=0,            # 0: d_model // n_heads
        d_ff=0,                # 0: 4 * d_model
        norm="rmsnorm",        # rmsnorm | layernorm (LayerNorm has scale and bias)
        activation="gelu",     # gelu | swiglu
        qk_norm=False,         # normalise queries and keys per head (Dehghani et al. 2023)
        tie_embeddings=True,   # output logits use the input embedding table
        rope_base=10000.0,     # rotary embedding base (Su et al. 2021)
        max_seq_len=1024,      # size of the rotary table; data.seq_len must not exceed it
        init_std=0.02,         # N(0, 0.02^2); residual-output projections / sqrt(2 n_layers)
        z_loss=0.0,            # PaLM z-loss coefficient (1e-4 in PaLM); 0 disables
        # Cross-entropy over chunks of this many sequence positions, each chunk's logits
        # recomputed in the backward pass, so the (batch, seq, vocab) logits are never held
        # whole; 0: one chunk; -1: 512 positions when the vocabulary has >= 32768 entries
        loss_chunk=-1,
        mup_base_width=0,      # 0: standard parameterization; > 0: muP (Yang et al. 2022)
                               # with width multiplier d_model / mup_base_width
        attention="auto",      # auto (cudnn on GPU, splash on TPU, einsum on CPU) | einsum |
                               # xla | cudnn | splash (lm/model/attention.py)
        remat="none",          # activation checkpointing per block: none | full | dots (keep
                               # matmul outputs) | dots_except_mlp (keep attention projections)
        scan_layers=False,     # one scanned block over stacked parameters: compile time and
                               # program size independent of depth (fixed for a run)
    ))
    if size:
        ladder.apply_size(c.model, size)

    c.data = data_defaults()

    c.optimizer = ml_collections.ConfigDict(dict(
        name="adamw",          # any of optim.registered_optimizers()
        lr=3e-3,               # peak learning rate
        grad_clip=1.0,         # global-norm clipping; 0 disables
        # > 0: evaluate an exponential moving average of the parameters, xi <- d xi + (1 - d)
        # theta after each step (Zhang et al. 2024 pair it with a constant lr); 0: off
        weight_average_decay=0.0,
        # Parameter groups: name -> the parameters whose path ("block_0/mlp/up/kernel") matches
        # `pattern` (re.search), their lr multiplier, and weight decay (True / False / None:
        # the default rule, decay iff ndim >= 2). Add groups in a config file, e.g.
        # c.optimizer.groups.norms = dict(pattern="norm", lr_multiplier=0.1, weight_decay=None)
        groups=ml_collections.ConfigDict(dict(
            embeddings=dict(pattern="embed", lr_multiplier=1.0, weight_decay=False),
        )),
        # One section per optimizer with its own hyperparameters and their defaults, e.g.
        # --config.optimizer.name=lion --config.optimizer.lion.b2=0.98
        **{name: ml_collections.ConfigDict(hparams)
           for name, hparams in optim.optimizer_defaults().items()},
    ))

    c.schedule = ml_collections.ConfigDict(dict(
        name="cosine",         # cosine | wsd | linear | constant
        warmup_steps=100,      # linear warmup from 0 to optimizer.lr
        warmup_fraction=0.0,   # > 0: warm up over this fraction of train.steps instead of
                               # warmup_steps (a sweep over run lengths keeps the shape)
        final_lr_fraction=0.1,  # lr at the end, as a fraction of the peak
        decay_fraction=0.2,    # wsd: share of the steps spent decaying
    ))

    c.train = ml_collections.ConfigDict(dict(
        steps=1000,            # optimizer steps
        batch_size=32,         # global batch, in sequences
        microbatches=1,        # gradient accumulation: batch_size / microbatches per pass
        seed=0,                # parameters and data order
        eval_every=100,        # validate every this many steps (and at the end)
        checkpoint_every=500,  # save a checkpoint every this many steps (and at the end)
        keep_checkpoints=3,    # newest checkpoints kept
        log_every=10,          # write a metrics row every this many steps
        layer_stats_every=100,  # RMS of each parameter, gradient and update; 0 disables
        # Metric writers, comma-separated: jsonl (WORKDIR/metrics.jsonl, always written:
        # resume, sweeps and fits read it), tensorboard (WORKDIR/tb/, via tensorboardX),
        # wandb (a Weights & Biases run; WANDB_MODE=offline writes WORKDIR/wandb/)
        loggers="jsonl",
        wandb_project="optiscale",  # loggers=wandb: the W&B project
        wandb_entity="",       # loggers=wandb: the W&B team or user; "" is your default
        # loggers=wandb: the W&B run group; "" groups by the workdir's parent directory (a
        # sweep's root), so a sweep's runs group together
        wandb_group="",
        # "FIRST:LAST" (e.g. "20:25"): a jax.profiler trace of about those steps in
        # WORKDIR/profile (TensorBoard's profile plugin or xprof reads it); "" disables
        profile_steps="",
        # A loss spike starts at a step whose loss exceeds loss_spike_ratio x the median of
        # the previous loss_spike_window steps (train/loss_spikes counts them)
        loss_spike_window=50,
        loss_spike_ratio=1.2,  # (see loss_spike_window)
        # Branch a new run (in-situ intervention): a workdir without checkpoints starts from
        # this run's checkpoint at branch_step (-1: its newest) and copies its metrics up to
        # there; any config change (e.g. precision) applies from that step on
        branch_from="",
        branch_step=-1,        # (see branch_from)
    ))

    # Device mesh (lm/train/sharding.py): data x fsdp x tensor must equal the device count; one axis
    # may be -1, "the devices left over". The default is data parallelism over every device.
    c.mesh = ml_collections.ConfigDict(dict(
        data=-1,               # replicas of parameters and optimizer state; the batch is split
        fsdp=1,                # ZeRO-3: batch, parameters and optimizer state split
        tensor=1,              # Megatron: heads, MLP units and vocabulary split
        slices=1,              # multi-slice TPU runs: the data axis spans this many slices
                               # (data parallel over the data-center network)
        # Logical axis -> comma-separated mesh axes ("" = unsharded), e.g. pure data parallel
        # with fsdp > 1 set: --config.mesh.rules.embed=''
        rules=ml_collections.ConfigDict(dict(
            batch="data,fsdp",  # activations' batch dim
            embed="fsdp",       # the model dim of parameters (activations: the batch took fsdp)
            vocab="tensor",     # the embedding table's vocabulary dim
            heads="tensor",     # attention heads of the query and output projections
            kv_heads="tensor",  # key/value heads
            mlp="tensor",       # MLP hidden units
            seq="",             # sequence positions of activations
            head_dim="",        # the per-head dim
            norm="",           # norm scales and biases: small, replicated
            layers="",         # the leading axis of scanned (stacked) layer parameters
        )),
    ))

    # MX (OCP Microscaling) matmuls, emulated bit-exactly (lm/model/mx.py). Element formats:
    # mxfp8_e4m3 | mxfp8_e5m2 | mxfp6_e3m2 | mxfp6_e2m3 | mxfp4_e2m1 | mxint8, bfloat16 (an
    # operand rounded to bf16), "" (not quantized). Unset backward formats default as in
    # microxcaling: weights_bp = weights, the other three = activations.
    c.precision = ml_collections.ConfigDict(dict(
        # auto (bfloat16 on GPU and TPU, float32 on CPU) | float32 | bfloat16: the compute
        # dtype; parameters and optimizer state are always float32
        activation_dtype="auto",
        mx_weights="",             # weights in the forward GEMMs
        mx_activations="",         # activations in the forward GEMMs
        mx_weights_bp="",          # weights in the input-gradient GEMM dx = g W^T
        mx_activations_bp="",      # stashed activations in the weight-gradient GEMM dW = x^T g
        mx_grads_for_weights="",   # output gradient in dW
        mx_grads_for_inputs="",    # output gradient in dx
        mx_layers=("qkv", "attn_out", "mlp", "lm_head"),  # attention matmuls and embeddings:
                                                          # never quantized (Su et al.)
        mx_block_size=32,          # elements sharing one E8M0 scale (32 in the OCP spec)
        mx_rounding="even",        # even (OCP) | half_away (microxcaling's default; Su et al.)
        mx_scale_rule="floor",     # floor (OCP) | bump_on_overflow (Su et al.'s intervention)
        mx_quantize_backprop=True,  # False: backward GEMMs unquantized ("forward only")
        # emulated (the reference, any backend) | scaled_dot (GEMMs whose operands are both
        # fp8/fp4 go to jax.lax.scaled_dot as elements + E8M0 scales: MX tensor cores)
        mx_backend="emulated",
        # Norm scale/bias: float32 | bfloat16 (rounded in the forward, as microxcaling's
        # LayerNorm; ties as mx_rounding under MX) | none (no affine parameters: a different
        # model, fixed for the run)
        norm_affine="float32",
    ))
    return c
