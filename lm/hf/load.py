"""A run's starting parameters from a Hugging Face model directory (train.init_from=hf:DIR):
its config.json is checked against the run's model (lm/hf/architectures.py) before any data is
prepared, and its safetensors weights become the run's step-0 parameters, sharded as the run's
(each process reads the slices its devices hold). Importing and exporting again (lm.export)
gives back the same tensors, bit for bit."""
import json
import os

import jax
import numpy as np

from lm import hf
from lm.errors import ConfigError
from lm.hf.architectures import check_hf_config
from lm.hf.weights import from_hf

PREFIX = "hf:"


def model_dir(init_from: str) -> str:
    """The directory of train.init_from=hf:DIR; ConfigError for another form or no model."""
    if not init_from.startswith(PREFIX):
        raise ConfigError(f"train.init_from={init_from!r}: give hf:DIR, a Hugging Face model "
                          "directory (config.json and safetensors weights)")
    path = os.path.expanduser(init_from[len(PREFIX):])
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ConfigError(f"train.init_from={init_from!r}: {path} has no config.json; give the "
                          "directory a model was saved to (save_pretrained, or lm.export --hf_dir)")
    return path


def check(config, model_cfg) -> None:
    """ConfigError, before anything is prepared or compiled, for an init_from that cannot start
    this run: not a supported model, a config that differs from config.model, or settings an
    import cannot honour."""
    path = model_dir(config.train.init_from)
    if config.train.branch_from:
        raise ConfigError("train.init_from and train.branch_from both say where the run starts; "
                          "set only one")
    if model_cfg.mup_base_width or model_cfg.norm_affine != "float32":
        raise ConfigError(f"train.init_from with model.mup_base_width={model_cfg.mup_base_width}"
                          f" and precision.norm_affine={model_cfg.norm_affine}: a Hugging Face "
                          "model imports into a standard-parameterization run with float32 norm "
                          "parameters; set model.mup_base_width=0 and precision.norm_affine="
                          "float32")
    transformers = hf.require("transformers")
    check_hf_config(transformers.AutoConfig.from_pretrained(path), model_cfg, path)


def read_tensors(path: str) -> dict[str, np.ndarray]:
    """Every tensor of the model in `path`: model.safetensors, or the files its index names."""
    safetensors_numpy = hf.require("safetensors.numpy")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.isfile(os.path.join(path, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        raise ConfigError(f"{path} has no model.safetensors (nor an index of safetensors "
                          "shards); save the model with safe_serialization (the default)")
    tensors = {}
    for name in files:
        tensors.update(safetensors_numpy.load_file(os.path.join(path, name)))
    return tensors


def params(init_from: str, model_cfg, abstract_params):
    """The run's parameters from hf:DIR, laid out as `abstract_params` (ShapeDtypeStructs with
    their shardings); ConfigError names a tensor that is missing or of another shape."""
    path = model_dir(init_from)
    arch = check_hf_config(hf.require("transformers").AutoConfig.from_pretrained(path),
                           model_cfg, path)
    try:
        host = from_hf(read_tensors(path), model_cfg, arch)
    except KeyError as err:
        raise ConfigError(f"{path} lacks tensor {err} of a {arch.name}; is the model "
                          "complete?") from err
    want = jax.tree_util.tree_structure(abstract_params)
    if jax.tree_util.tree_structure(host) != want:
        raise ConfigError(f"{path}: its tensors do not form this run's parameters ({want})")

    def place(value, target):
        if value.shape != target.shape:
            raise ConfigError(f"{path}: a tensor of shape {value.shape} is {target.shape} in "
                              "this run's model")
        return jax.make_array_from_callback(target.shape, target.sharding,
                                            lambda index: value[index])

    return jax.tree_util.tree_map(place, host, abstract_params)
