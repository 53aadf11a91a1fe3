"""A run as a Hugging Face model directory, which transformers loads without custom code:

    python -m lm.export --workdir=runs/quickstart --hf_dir=hf/quickstart [--step=N] [--overwrite]

writes config.json, model.safetensors (float32), generation_config.json, tokenizer.json and
tokenizer_config.json, so that `AutoModelForCausalLM.from_pretrained(HF_DIR)` computes the run's
logits (to float32 round-off) and `AutoTokenizer.from_pretrained(HF_DIR)` encodes text to the
run's ids. The architecture is the standard one that computes the run's model
(lm/hf/architectures.py: Llama, Qwen3, Arcee or Starcoder2); a model none computes is refused
before the checkpoint is read. The parameters are those the run evaluates (an optimizer's weight
average or schedule-free point, as lm.sample), from its newest checkpoint that restores or
--step's. An MX run exports its float32 master weights, with a warning: transformers computes
them unquantized. The directory is written next to --hf_dir and renamed into place; an existing
--hf_dir is replaced only with --overwrite. Nothing in the workdir is written.
"""
import json
import os
import shutil
import sys
import tempfile
import warnings

from absl import logging

from core import cli
from lm import hf, sample
from lm.errors import ConfigError
from lm.hf.architectures import architecture_of, config_fields
from lm.hf.tokenizer import tokenizer_files
from lm.hf.weights import to_hf

WEIGHTS = "model.safetensors"


def check_out(out: str, overwrite: bool) -> None:
    """ConfigError for an --hf_dir that exists (without --overwrite) or is not a directory."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--hf_dir={out} is a file; give a directory path")
    if os.path.exists(out) and not overwrite:
        raise ConfigError(f"--hf_dir={out} exists; pass --overwrite to replace it, or give a new "
                          "directory")


def write_model_dir(out: str, params: dict, cfg, tokenizer, overwrite: bool = False) -> str:
    """Writes the model directory of ModelConfig `cfg` with `params` and `tokenizer` to `out`
    (checked with check_out first): built in a temporary directory beside it, then renamed."""
    check_out(out, overwrite)
    arch = architecture_of(cfg)
    transformers = hf.require("transformers")
    safetensors_numpy = hf.require("safetensors.numpy")
    if cfg.mx is not None:
        warnings.warn(f"{cfg.mx_layers} are MX-quantized in this run; the export holds the "
                      "float32 master weights, which transformers computes unquantized")
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    try:
        config = getattr(transformers, arch.config_class)(
            **config_fields(cfg, arch, tokenizer.eos_id))
        config.save_pretrained(tmp)
        transformers.GenerationConfig(bos_token_id=tokenizer.eos_id,
                                      eos_token_id=tokenizer.eos_id,
                                      pad_token_id=tokenizer.eos_id).save_pretrained(tmp)
        safetensors_numpy.save_file(to_hf(params, cfg, arch), os.path.join(tmp, WEIGHTS),
                                    metadata={"format": "pt"})
        for name, text in tokenizer_files(tokenizer, cfg.max_seq_len).items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)
        _permissions_of_a_new_directory(tmp)
        if os.path.exists(out):  # --overwrite: the old directory goes only once the new is in
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=parent)
            os.rename(out, os.path.join(old, "dir"))
            os.rename(tmp, out)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return arch.name


def _permissions_of_a_new_directory(path: str) -> None:
    """The modes os.makedirs and open would give under the umask (mkdtemp and safetensors
    make them private), so that a shared export is readable as the user's other files are."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)
    for name in os.listdir(path):
        os.chmod(os.path.join(path, name), 0o666 & ~umask)


PARSER = cli.parser("python -m lm.export", __doc__)
cli.add_path(PARSER, "workdir", required=True, use="the run exported")
cli.add_path(PARSER, "hf_dir", required=True, use="written (a new directory, or one replaced "
             "with --overwrite)")
PARSER.add_argument("--step", type=int, default=-1, help="checkpoint step (-1: newest)")
PARSER.add_argument("--overwrite", action="store_true", help="replace an existing --hf_dir")


@cli.main(ConfigError)
def main(argv) -> int:
    args = PARSER.parse_args(argv)
    logging.set_verbosity(logging.ERROR)  # not Orbax's notes on opening checkpoints read-only
    check_out(args.hf_dir, args.overwrite)
    trained = sample.load(args.workdir, args.step)
    architecture_of(trained.model.cfg)  # refused before the checkpoint is read
    name = write_model_dir(args.hf_dir, trained.params, trained.model.cfg, trained.tokenizer,
                           args.overwrite)
    print(json.dumps(dict(hf_dir=args.hf_dir, architecture=name, step=trained.step)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
