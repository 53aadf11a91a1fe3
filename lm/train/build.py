"""Everything a run needs before its first step, checked before anything compiles: the config,
the mesh, the optimizer against the parameter shapes, the data (prepared on first use), the
model against the workdir (and that its filesystem is available: gs:// needs gcsfs), and the
sharded jitted functions; process 0 writes the run files."""
import dataclasses
import os

import jax

import optim
from data import tokenizer
from lm.errors import ConfigError
from lm.hf import load as hf_load
from lm.model import ModelConfig
from lm.model.info import count_pytree_params, model_info
from lm.train import batches, runtime, sharding
from lm.train import workdir as run_files
from lm.train.config_checks import check_config


@dataclasses.dataclass(frozen=True)
class Run:
    config: object  # the run's ml_collections.ConfigDict
    workdir: str
    data: batches.RunData
    model_cfg: ModelConfig
    info: dict  # parameter counts and FLOPs per token (lm.model.info.model_info)
    optimizer: optim.Optimizer
    rt: runtime.Runtime
    primary: bool  # process 0, which writes the run files and metrics

    @property
    def tokens_per_step(self) -> int:
        return self.config.train.batch_size * self.config.data.seq_len


def planned_vocab_size(config) -> int:
    """The vocabulary a run config's tokenizer will have, before any data is prepared: the byte
    tokenizer's, data.vocab_size for BPE, or a Hugging Face tokenizer's own."""
    return tokenizer.planned_vocab_size(config.data.tokenizer, config.data.vocab_size)


def build(config, workdir: str) -> Run:
    run_files.check_filesystems(workdir, config.train.branch_from)
    check_config(config)
    sharder = sharding.from_config(config)
    optimizer = runtime.build_optimizer(config)
    try:  # an hf: tokenizer that cannot be read; an unknown corpus, too-short split, stale data
        vocab_size = planned_vocab_size(config)  # a trained BPE may be smaller, never larger
        if 0 < config.model.vocab_size < vocab_size:
            raise ValueError(f"model.vocab_size={config.model.vocab_size} is smaller than the "
                             f"tokenizer's {vocab_size} tokens; use 0 (the tokenizer's size) "
                             f"or a padded size >= {vocab_size}")
        if config.train.init_from:  # checked before any data is prepared
            hf_load.check(config, ModelConfig.for_run(config,
                                                      config.model.vocab_size or vocab_size))
        data = batches.load(config)  # prepares data on first use
    except ValueError as err:
        raise ConfigError(str(err)) from err
    model_cfg = ModelConfig.for_run(config, data.vocab_size)
    run_files.check_model(workdir, model_cfg)
    run_files.check_data(workdir, data.inputs)
    rt = runtime.build_for_run(config, model_cfg, optimizer.tx, sharder)
    run = Run(config, workdir, data, model_cfg, model_info(model_cfg, config.data.seq_len),
              optimizer, rt, primary=jax.process_index() == 0)
    counted = count_pytree_params(rt.abstract_state.params)
    assert counted == run.info["params/total"], (counted, run.info["params/total"])
    if run.primary:
        run_files.write_run_files(workdir, config, run_files.model_record(model_cfg, run.info))
        run_files.write_json(os.path.join(workdir, run_files.DATA), data.inputs)
        print(f"model: {run.info['params/total']:,} parameters "
              f"({run.info['params/non_embedding']:,} non-embedding), "
              f"{run.info['flops_per_token']:,} training FLOPs/token; mesh {sharder.describe()}",
              flush=True)
    return run
