"""Text from a trained run: what has the model learned?

    python -m lm.sample --workdir=runs/quickstart --prompt="The kernel"
    python -m lm.sample --workdir=runs/quickstart --prompt="def " --temperature=0.8 --top_k=40 \\
        --samples=3 --tokens=100

Loads the run's config.json, its tokenizer (the one its prepared data was tokenized with, found
through data.json) and its newest checkpoint that restores (--step picks another; one being
written or damaged is skipped, with a warning naming it), and evaluates the parameters the run
evaluates with (an optimizer's weight average or schedule-free point, see
optim.Optimizer.eval_params). Each sample starts a new document: EOS, then the prompt, as the
training data separates documents. Decoding uses a KV cache (lm/model/decode.py); a sample ends
at the first EOS or after --tokens new tokens. The prompt and the new tokens must fit in the
model's context (model.max_seq_len tokens); past the run's data.seq_len, a warning says the
positions were never trained. Nothing in the workdir is written.
"""
import dataclasses
import functools
import json
import os
import sys
import warnings

import jax
import ml_collections
import numpy as np
from absl import logging

from core import cli
from data.dataset import tokenizer_of
from data.tokenizer import Tokenizer
from lm.errors import ConfigError
from lm.model import ModelConfig, Transformer, init_params
from lm.model.decode import generate
from lm.train import runtime
from lm.train import workdir as run_files
from lm.train.checkpoint import Checkpointer
from lm.train.step import init_state


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A run's model and tokenizer, and the checkpoint step asked for (-1: the newest that
    restores). `params` reads the checkpoint on first use, so that a request is checked before
    that read (long for a large run); `step` is the step read."""
    workdir: str
    config: ml_collections.ConfigDict
    model: Transformer
    tokenizer: Tokenizer
    requested_step: int

    @property
    def trained_length(self) -> int:
        """data.seq_len: the positions the model saw in training."""
        return self.config.data.seq_len

    @property
    def step(self) -> int:
        """The checkpoint's step: the one asked for, else the newest that restored."""
        return self.requested_step if self.requested_step != -1 else self._restored[0]

    @functools.cached_property
    def params(self) -> dict:
        """The parameters the run evaluates (optim.Optimizer.eval_params) at `step`."""
        return self._restored[1]

    @functools.cached_property
    def _restored(self) -> tuple[int, dict]:
        """(step, parameters) on this process's first device whatever mesh the run trained on
        (Orbax reshards on restore). A checkpoint being written or damaged is skipped, with a
        warning, for the one before (Checkpointer.restore_readable)."""
        optimizer = runtime.build_optimizer(self.config)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
            jax.eval_shape(lambda: init_state(init_params(self.model, jax.random.PRNGKey(0), 1),
                                              optimizer.tx)))
        checkpointer = Checkpointer(self.workdir, 1, read_only=True)
        try:
            step, state, _ = checkpointer.restore_readable(abstract, self.requested_step)
        finally:
            checkpointer.close()
        return step, jax.jit(optimizer.eval_params)(state.opt_state, state.params)


def load(workdir: str, step: int = -1) -> TrainedModel:
    """The run in `workdir` at its checkpoint of `step` (-1: the newest); ConfigError names a
    workdir that is not a run or has no such checkpoint. Nothing is restored yet."""
    config_path = os.path.join(workdir, run_files.CONFIG)
    if not run_files.exists(config_path):
        raise ConfigError(f"--workdir={workdir} has no {run_files.CONFIG}: give the directory "
                          "of a run (python -m lm.train --workdir=...)")
    config = ml_collections.ConfigDict(run_files.read_json(config_path))
    steps = []
    if run_files.isdir(os.path.join(workdir, run_files.CHECKPOINTS)):
        checkpointer = Checkpointer(workdir, 1, read_only=True)
        steps = checkpointer.steps()
        checkpointer.close()
    if not steps or (step != -1 and step not in steps):
        raise ConfigError(f"--step={step}: {workdir} has checkpoints at steps {steps}; "
                          "give one of those (or -1, the newest), or train the run first")
    sources = run_files.read_json(os.path.join(workdir, run_files.DATA))
    try:
        tokenizer = tokenizer_of(next(iter(sources.values()))["path"])
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from err
    vocab_size = run_files.read_json(os.path.join(workdir, run_files.MODEL))["model"][
        "vocab_size"]
    model = Transformer(ModelConfig.for_run(config, vocab_size))
    return TrainedModel(workdir, config, model, tokenizer, step)


def sample(trained: TrainedModel, prompt: str, *, tokens: int, samples: int = 1,
           temperature: float = 0.0, top_k: int = 0, seed: int = 0) -> list[str]:
    """`samples` continuations of `prompt`, each cut at its first EOS. Settings are checked
    before the checkpoint is read or anything compiles (ConfigError)."""
    tokenizer, cfg = trained.tokenizer, trained.model.cfg
    prompt_ids = [tokenizer.eos_id, *tokenizer.encode_batch([prompt])[0]]
    if tokens < 1 or len(prompt_ids) + tokens > cfg.max_seq_len:
        raise ConfigError(f"--tokens={tokens} after a prompt of {len(prompt_ids)} tokens (EOS "
                          f"included): the model's context is model.max_seq_len="
                          f"{cfg.max_seq_len} tokens; ask for 1 to "
                          f"{cfg.max_seq_len - len(prompt_ids)} tokens or shorten the prompt")
    if len(prompt_ids) + tokens > trained.trained_length:
        warnings.warn(f"the prompt and --tokens={tokens} take {len(prompt_ids) + tokens} "
                      f"positions; the model was trained on {trained.trained_length} "
                      "(data.seq_len): the positions after those were never trained")
    if temperature < 0 or not 0 <= top_k <= cfg.vocab_size or samples < 1:
        raise ConfigError(f"--temperature={temperature}, --top_k={top_k}, --samples={samples}: "
                          f"use temperature >= 0 (0: greedy), 0 <= top_k <= {cfg.vocab_size} "
                          "(0: every token) and samples >= 1")
    prompt_batch = np.tile(np.asarray(prompt_ids, np.int32), (samples, 1))
    new = np.asarray(generate(trained.model, trained.params, prompt_batch,
                              jax.random.PRNGKey(seed), new_tokens=tokens,
                              temperature=float(temperature), top_k=top_k))
    texts = []
    for row in new.tolist():
        end = row.index(tokenizer.eos_id) if tokenizer.eos_id in row else len(row)
        texts.append(tokenizer.decode(row[:end]))
    return texts


PARSER = cli.parser("python -m lm.sample", __doc__)
cli.add_path(PARSER, "workdir", required=True, use="the run sampled from")
PARSER.add_argument("--prompt", default="", help="text the samples continue")
PARSER.add_argument("--tokens", type=int, default=100, help="new tokens per sample, at most")
PARSER.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
PARSER.add_argument("--top_k", type=int, default=0,
                    help="sample from the k most likely tokens (0: all)")
PARSER.add_argument("--samples", type=int, default=1, help="continuations to draw")
PARSER.add_argument("--seed", type=int, default=0, help="sampling seed")
PARSER.add_argument("--step", type=int, default=-1, help="checkpoint step (-1: newest)")
PARSER.add_argument("--json", action="store_true", help="one JSON line per sample")


@cli.main(ConfigError)
def main(argv) -> int:
    args = PARSER.parse_args(argv)
    logging.set_verbosity(logging.ERROR)  # not Orbax's notes on opening checkpoints read-only
    trained = load(args.workdir, args.step)
    texts = sample(trained, args.prompt, tokens=args.tokens, samples=args.samples,
                   temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    settings = dict(step=trained.step, temperature=args.temperature, top_k=args.top_k,
                    seed=args.seed)
    for i, text in enumerate(texts):
        if args.json:
            print(json.dumps(dict(settings, sample=i, prompt=args.prompt, text=text)))
        else:
            print(f"--- sample {i} (step {trained.step}, temperature {args.temperature}, "
                  f"top_k {args.top_k}) ---\n{args.prompt}{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
