"""Models in and out through Hugging Face: `python -m lm.export` writes a run as a standard
transformers model directory, and `--config.train.init_from=hf:DIR` starts a run from one.

    architectures.py  which transformers architecture each model config is; refusals; checks
    weights.py        optiscale parameters <-> transformers tensors (both directions)
    tokenizer.py      a run's tokenizer as tokenizer.json + tokenizer_config.json
    load.py           a run's parameters from a model directory (train.init_from)

torch, transformers and safetensors are optional (`pip install -e '.[hf]'`): `require` imports
them on use with that fix as the error.
"""
import importlib

from lm.errors import ConfigError


def require(module: str):
    """The module `module` (transformers, safetensors, ...), or a ConfigError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"{module} is not installed ({err}); Hugging Face export and import "
                          "need it: pip install -e '.[hf]'") from err
