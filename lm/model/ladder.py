"""Model size ladder, from ~30K to ~1B parameters: name -> (d_model, n_layers, n_heads).

Names read `d<width>_l<depth>`. Widths and depths follow the GPT-2/Chinchilla aspect ratios
(d_model / n_layers between 16 and 128) with head_dim 16 below d_model 64, 32 below 256 and 64
from there; the rungs below d128_l4 are the tiny study's. Use one as
`--config=configs/base.py:d256_l4`; `python -m lm.model.ladder` prints the exact parameter counts
(the table in docs/models.md comes from it).
"""
import sys

from core import cli

SIZES = {
    "d32_l2": (32, 2, 2),
    "d48_l2": (48, 2, 3),
    "d64_l2": (64, 2, 2),
    "d96_l2": (96, 2, 3),
    "d96_l3": (96, 3, 3),
    "d128_l4": (128, 4, 4),
    "d192_l4": (192, 4, 6),
    "d256_l4": (256, 4, 4),
    "d384_l6": (384, 6, 6),
    "d512_l8": (512, 8, 8),
    "d768_l12": (768, 12, 12),
    "d1024_l16": (1024, 16, 16),
    "d1536_l20": (1536, 20, 24),
    "d2048_l20": (2048, 20, 32),
}


def shape(name: str) -> tuple[int, int, int]:
    """(d_model, n_layers, n_heads) of ladder size `name`."""
    if name not in SIZES:
        raise ValueError(f"unknown model size {name!r}; the ladder has: {', '.join(SIZES)}")
    return SIZES[name]


def apply_size(model_cfg, name: str) -> None:
    """Sets d_model, n_layers and n_heads of `model_cfg` to ladder size `name`."""
    model_cfg.d_model, model_cfg.n_layers, model_cfg.n_heads = shape(name)


PARSER = cli.parser("python -m lm.model.ladder", __doc__)


@cli.main()
def main(argv) -> None:
    """Prints the ladder's parameter counts (byte and 8192-token BPE vocabularies, tied)."""
    from data.settings import DATA
    from data.tokenizer import ByteTokenizer
    from lm.model.config import ModelConfig
    from lm.model.info import flops_per_token, param_counts
    from lm.model.settings import model_config_dict

    PARSER.parse_args(argv)

    print("| size | d_model | layers | heads | non-embedding | total (byte vocab 257) | "
          "total (BPE 8192) | train FLOPs/token (seq 1024, BPE 8192) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in SIZES:
        cfg = model_config_dict(name)
        cfg.max_seq_len = 1024
        byte = ModelConfig.from_config(cfg, ByteTokenizer.vocab_size, "float32")
        bpe = ModelConfig.from_config(cfg, DATA["vocab_size"].default, "float32")
        counts = param_counts(bpe)
        print(f"| {name} | {bpe.d_model} | {bpe.n_layers} | {bpe.n_heads} | "
              f"{counts['non_embedding']:,} | {param_counts(byte)['total']:,} | "
              f"{counts['total']:,} | {flops_per_token(bpe, 1024):.3e} |")


if __name__ == "__main__":
    sys.exit(main())
