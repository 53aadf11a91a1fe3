"""The run's own settings, defined once (core/fields.py): the loop (`config.train`), the device
mesh (`config.mesh`, lm/train/sharding.py) and the precision (`config.precision`, the compute
dtype and MX matmuls of lm/model/mx.py); and `run_config`, the whole run config assembled from
every subsystem's definitions. JAX-free: building a config loads no JAX.
"""
import ml_collections

from core.fields import Field, Section, nonnegative, positive
from data.settings import DATA
from lm.model.settings import (
    DTYPES,
    MX_BACKENDS,
    MX_ROUNDINGS,
    MX_SCALE_RULES,
    NORM_AFFINE,
    model_config_dict,
)
from optim.settings import SCHEDULE, optimizer_section

LOGGERS = ("jsonl", "tensorboard", "wandb")
MESH_AXES = ("data", "fsdp", "tensor")


def _harness_both(t) -> str:
    if bool(t["harness_tasks"]) != bool(t["harness_every"]):
        return (f"train.harness_tasks={t['harness_tasks']!r} with train.harness_every="
                f"{t['harness_every']}: set both (tasks, and the steps between runs of them) or "
                "neither")
    return ""


def _microbatches_divide(t) -> str:
    if t["batch_size"] % t["microbatches"]:
        return (f"train.batch_size={t['batch_size']} is not divisible by train.microbatches="
                f"{t['microbatches']}")
    return ""


TRAIN = Section("train", "the training loop (lm/train/loop.py and its hooks)", dict(
    steps=positive(1000, "optimizer steps"),
    batch_size=positive(32, "global batch, in sequences"),
    microbatches=positive(1, "gradient accumulation: batch_size / microbatches per pass"),
    seed=Field(0, "parameters and data order"),
    eval_every=positive(100, "validate every this many steps (and at the end)"),
    checkpoint_every=positive(500, "save a checkpoint every this many steps (and at the end)"),
    keep_checkpoints=positive(3, "newest checkpoints kept"),
    log_every=positive(10, "write a metrics row every this many steps"),
    layer_stats_every=nonnegative(100, "RMS of each parameter, gradient and update; 0 disables"),
    harness_tasks=Field("", "lm-evaluation-harness tasks, comma-separated, run on the live "
                            "parameters every harness_every steps (lm/train/harness.py); rows get "
                            "harness/<task>/<metric>; \"\" disables"),
    harness_every=nonnegative(0, "run harness_tasks every this many steps (and at the end); 0 "
                                 "disables"),
    harness_limit=nonnegative(0, "harness_tasks: the first this many documents of each task (0: "
                                 "all)"),
    harness_include_path=Field("", "harness_tasks: a directory of task YAML files besides the "
                                   "harness's own"),
    loggers=Field("jsonl", "metric writers, comma-separated: jsonl (WORKDIR/metrics.jsonl, "
                           "always written: resume, sweeps and fits read it), tensorboard "
                           "(WORKDIR/tb/), wandb (WANDB_MODE=offline writes WORKDIR/wandb/)"),
    wandb_project=Field("optiscale", "loggers=wandb: the W&B project"),
    wandb_entity=Field("", "loggers=wandb: the W&B team or user; \"\" is your default"),
    wandb_group=Field("", "loggers=wandb: the W&B run group; \"\" groups by the workdir's parent "
                          "directory (a sweep's root)"),
    profile_steps=Field("", "\"FIRST:LAST\" (e.g. \"20:25\"): a jax.profiler trace of those "
                            "steps in WORKDIR/profile; \"\" disables"),
    loss_spike_window=positive(50, "a loss spike starts at a step whose loss exceeds "
                                   "loss_spike_ratio x the median of this many previous steps"),
    loss_spike_ratio=Field(1.2, "the spike threshold, see loss_spike_window", above=1.0),
    branch_from=Field("", "branch a new run (in-situ intervention): a workdir without "
                          "checkpoints starts from this run's checkpoint at branch_step and "
                          "copies its metrics up to there; config changes apply from then on"),
    branch_step=Field(-1, "the step branch_from starts at; -1: its newest checkpoint",
                      minimum=-1),
    init_from=Field("", "hf:DIR: a workdir without checkpoints starts from the weights of a "
                        "Hugging Face model directory (Llama, Qwen3, Arcee or Starcoder2, e.g. "
                        "lm.export's), whose config must match config.model (lm/hf/load.py)"),
    imports=Field("", "python modules imported before the run is built, comma-separated: "
                      "dotted names or .py paths (--import; core/user_modules.py), e.g. one "
                      "registering an optimizer defined outside optiscale"),
), rules=(_microbatches_divide, _harness_both))

# Logical axis -> comma-separated mesh axes ("" = unsharded), in rule priority order
# (lm/train/sharding.py): an axis already used by an earlier dim of an array is skipped.
RULES = Section("mesh.rules", "logical axis -> mesh axes, e.g. pure data parallel with fsdp > 1 "
                              "set: --config.mesh.rules.embed=''", dict(
    batch=Field("data,fsdp", "activations' batch dim"),
    vocab=Field("tensor", "the embedding table's vocabulary dim"),
    heads=Field("tensor", "attention heads of the query and output projections"),
    kv_heads=Field("tensor", "key/value heads"),
    mlp=Field("tensor", "MLP hidden units"),
    embed=Field("fsdp", "the model dim of parameters (activations: the batch took fsdp)"),
    seq=Field("", "sequence positions of activations"),
    head_dim=Field("", "the per-head dim"),
    norm=Field("", "norm scales and biases: small, replicated"),
    layers=Field("", "the leading axis of scanned (stacked) layer parameters"),
))

MESH = Section("mesh", "the device mesh: data x fsdp x tensor must equal the device count; one "
                       "axis may be -1, the devices left over", dict(
    data=Field(-1, "replicas of parameters and optimizer state; the batch is split"),
    fsdp=Field(1, "ZeRO-3: batch, parameters and optimizer state split"),
    tensor=Field(1, "Megatron: heads, MLP units and vocabulary split"),
    slices=positive(1, "multi-slice TPU runs: the data axis spans this many slices"),
    rules=RULES,
))

# MX element formats are checked with the formats themselves (lm/model/mx.py); unset backward
# formats default as in microxcaling: weights_bp = weights, the other three = activations.
_MX_FORMAT = ("mxfp8_e4m3 | mxfp8_e5m2 | mxfp6_e3m2 | mxfp6_e2m3 | mxfp4_e2m1 | mxint8, bfloat16 "
              "(rounded to bf16), \"\" (not quantized)")

PRECISION = Section("precision", "compute dtype and MX (OCP Microscaling) matmuls, emulated "
                                 "bit-exactly (lm/model/mx.py)", dict(
    activation_dtype=Field("auto", "auto (bfloat16 on GPU and TPU, float32 on CPU) | float32 | "
                                   "bfloat16; parameters and optimizer state stay float32",
                           choices=DTYPES),
    mx_weights=Field("", "weights in the forward GEMMs: " + _MX_FORMAT),
    mx_activations=Field("", "activations in the forward GEMMs"),
    mx_weights_bp=Field("", "weights in the input-gradient GEMM dx = g W^T"),
    mx_activations_bp=Field("", "stashed activations in the weight-gradient GEMM dW = x^T g"),
    mx_grads_for_weights=Field("", "output gradient in dW"),
    mx_grads_for_inputs=Field("", "output gradient in dx"),
    mx_layers=Field(("qkv", "attn_out", "mlp", "lm_head"),
                    "layer kinds quantized; attention matmuls and embeddings never are (Su et "
                    "al.)"),
    mx_block_size=positive(32, "elements sharing one E8M0 scale (32 in the OCP spec)"),
    mx_rounding=Field("even", "even (OCP) | half_away (microxcaling's default; Su et al.)",
                      choices=MX_ROUNDINGS),
    mx_scale_rule=Field("floor", "floor (OCP) | bump_on_overflow (Su et al.'s intervention)",
                        choices=MX_SCALE_RULES),
    mx_quantize_backprop=Field(True, "False: backward GEMMs unquantized (\"forward only\")"),
    mx_backend=Field("emulated", "emulated (the reference, any backend) | scaled_dot (fp8/fp4 "
                                 "GEMMs to jax.lax.scaled_dot: MX tensor cores)",
                     choices=MX_BACKENDS),
    norm_affine=Field("float32", "norm scale/bias: float32 | bfloat16 (rounded in the forward, "
                                 "as microxcaling's LayerNorm) | none (no affine parameters: "
                                 "a different model, fixed for the run)", choices=NORM_AFFINE),
))


def sections() -> tuple:
    """The sections of a run config, in the order configs.help lists them (the optimizers' as
    registered now: a user's module may have added one)."""
    return (DATA, optimizer_section(), SCHEDULE, TRAIN, MESH, PRECISION)


def run_config(size: str = "") -> ml_collections.ConfigDict:
    """A run config with every field at its default, the model at ladder size `size`
    (lm/model/ladder.py; "" keeps the default d128_l4 shape)."""
    config = ml_collections.ConfigDict()
    config.model = model_config_dict(size)
    for section in sections():
        config[section.name] = section.config_dict()
    return config
