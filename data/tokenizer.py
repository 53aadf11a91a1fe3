"""Tokenizers behind one small interface: `byte`, the project's `bpe`, and any Hugging Face
`tokenizers` tokenizer (`hf:PATH`).

Both have `name` (the tokenizer id used in prepared-data paths), `vocab_size`, `eos_id`,
`encode_batch(texts) -> list[list[int]]` and `decode(ids) -> str`, and both round-trip any text
exactly. `decode` renders EOS as "<|endoftext|>"; text that contains that string is encoded as
ordinary text, never as EOS.

- byte: UTF-8 bytes 0..255, EOS = 256, vocab_size 257. Needs no training.
- bpe: Hugging Face `tokenizers` byte-level BPE, trained offline (`train_bpe`); its id is
  `bpe<V>-<first 10 hex digits of sha256(tokenizer.json)>`, and it lives at
  `ROOT/tokenizers/<id>/tokenizer.json`.
- hf:PATH: a `tokenizer.json` (or a directory holding one, e.g. a model's tokenizer files),
  copied on first use to `ROOT/tokenizers/hf-<10 hex digits of its sha256>/` with the name of
  its end-of-document token: the directory's tokenizer_config.json `eos_token`, else the first
  of EOS_CANDIDATES in its vocabulary. Its own special tokens (BOS, ...) are not added:
  documents are separated by EOS only, as for the other tokenizers.

Training a BPE on your own corpus, to use as `--config.data.tokenizer=hf:DIR`:

    python -m data.tokenizer train --corpus SOURCE[,SOURCE...] --vocab_size N --out_dir DIR
        [--sample_mb 100] [--val_fraction 0.02] [--text_field text] [--data_root ROOT]

SOURCE: anything `data.sources` reads (a registered corpus, jsonl:PATTERN, parquet:PATTERN,
text:PATTERN, hf:NAME[:CONFIG[:SPLIT]]). The BPE is trained as `data.tokenizer=bpe` trains one
(`data.bpe_training`): on a sample of at most --sample_mb MiB of the sources'
training documents, shared equally among them, never a validation document (the split of
--val_fraction), and stored under ROOT/tokenizers/<id>/ with its recipe, so the same command
again finds it without training. DIR gets tokenizer.json and tokenizer_config.json
({"eos_token": "<|endoftext|>"}); a DIR holding another tokenizer.json is refused. (--out_dir
was --out, which also works.)
"""
import hashlib
import json
import os
import sys
from typing import Iterable, Optional, Protocol, Sequence

import numpy as np
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from core import cli
from data import store

EOS_TEXT = "<|endoftext|>"
EOS_CANDIDATES = (EOS_TEXT, "</s>", "<|end_of_text|>", "<eos>", "<|eos|>", "<|im_end|>")
DOCS_PER_BATCH = 256  # documents per encode or training batch
HF_META = "optiscale.json"  # beside an imported tokenizer.json: {"eos_token": ..., "source": ...}


class Tokenizer(Protocol):
    name: str
    vocab_size: int
    eos_id: int

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def encode_arrays(self, texts: list[str], dtype) -> list[np.ndarray]:
        """`encode_batch` as arrays of `dtype` (what data preparation stores)."""

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    name = "byte"
    vocab_size = 257
    eos_id = 256

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(t.encode("utf-8")) for t in texts]

    def encode_arrays(self, texts: list[str], dtype) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), np.uint8).astype(dtype) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        """Invalid UTF-8 (possible in model samples) decodes to U+FFFD."""
        pieces, current = [], bytearray()
        for i in ids:
            if i == self.eos_id:
                pieces.append(current.decode("utf-8", errors="replace"))
                current = bytearray()
            else:
                current.append(i)
        pieces.append(current.decode("utf-8", errors="replace"))
        return EOS_TEXT.join(pieces)


class HFTokenizer:
    """A `tokenizers.Tokenizer` (the project's BPE, or one given as hf:PATH)."""

    def __init__(self, hf: tokenizers.Tokenizer, name: str, eos_token: str = EOS_TEXT):
        self._hf = hf
        self._hf.encode_special_tokens = True  # "<|endoftext|>" inside a document is plain text
        self.name = name
        # Added tokens may lie above the base vocabulary: the largest id + 1 counts them all.
        self.vocab_size = max(hf.get_vocab(with_added_tokens=True).values()) + 1
        self.eos_id = hf.token_to_id(eos_token)
        self.eos_token = eos_token

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._hf.encode_batch(texts, add_special_tokens=False)]

    def encode_arrays(self, texts: list[str], dtype) -> list[np.ndarray]:
        return [np.asarray(ids, dtype) for ids in self.encode_batch(texts)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._hf.decode(list(ids), skip_special_tokens=False)

    def to_str(self) -> str:
        """Its tokenizer.json text (what lm.export writes)."""
        return self._hf.to_str()


def train_bpe(batches: Iterable[list[str]], vocab_size: int) -> str:
    """Trains a byte-level BPE on batches of documents; returns its tokenizer.json text. On a
    terminal the trainer shows its progress bars (counting pairs, computing merges).

    Deterministic: the same documents give the same file, whatever the number of threads.
    """
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[EOS_TEXT],
                                  show_progress=sys.stderr.isatty())
    hf.train_from_iterator(batches, trainer)
    return hf.to_str()


def bpe_id(vocab_size: int, tokenizer_json: str) -> str:
    return f"bpe{vocab_size}-{hashlib.sha256(tokenizer_json.encode()).hexdigest()[:10]}"


def tokenizer_dir(root, tokenizer_id: str) -> str:
    return store.join(root, "tokenizers", tokenizer_id)


def load_tokenizer(root, tokenizer_id: str) -> Tokenizer:
    """The tokenizer with id `tokenizer_id` ("byte", or one trained or imported under `root`)."""
    if tokenizer_id == "byte":
        return ByteTokenizer()
    path = store.join(tokenizer_dir(root, tokenizer_id), "tokenizer.json")
    data = store.read_bytes(path)
    if data is None:
        raise FileNotFoundError(f"no tokenizer {tokenizer_id!r} at {path}; `python -m "
                                f"data.prepare --tokenizer bpe ...` trains one, and "
                                f"--tokenizer hf:PATH imports one")
    meta = store.read_json(store.join(tokenizer_dir(root, tokenizer_id), HF_META)) or {}
    return HFTokenizer(tokenizers.Tokenizer.from_str(data.decode()), tokenizer_id,
                       meta.get("eos_token", EOS_TEXT))


def _eos_token(hf: tokenizers.Tokenizer, directory: str, path: str) -> str:
    config_path = os.path.join(directory, "tokenizer_config.json")
    if os.path.exists(config_path):
        with open(config_path) as f:
            eos = json.load(f).get("eos_token")
        eos = eos.get("content") if isinstance(eos, dict) else eos
        if eos and hf.token_to_id(eos) is not None:
            return eos
    for candidate in EOS_CANDIDATES:
        if hf.token_to_id(candidate) is not None:
            return candidate
    raise ValueError(f"tokenizer {path} has no end-of-document token (none of "
                     f"{', '.join(EOS_CANDIDATES)}, and no tokenizer_config.json eos_token beside "
                     "it): add one to its vocabulary, or write a tokenizer_config.json with "
                     '{"eos_token": "..."} next to tokenizer.json')


def read_hf_tokenizer(path: str) -> tuple[HFTokenizer, str]:
    """The tokenizer at `path` (a tokenizer.json, or a directory holding one) and its JSON."""
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise ValueError(f"data.tokenizer=hf:{path}: no tokenizer.json there; give the path of a "
                         "tokenizer.json or of a directory that holds one (a Hugging Face "
                         "tokenizer saved with save_pretrained)")
    with open(file, encoding="utf-8") as f:
        text = f.read()
    try:
        hf = tokenizers.Tokenizer.from_str(text)
    except Exception as err:  # tokenizers raises a bare Exception for a malformed file
        raise ValueError(f"{file} is not a Hugging Face tokenizers file: {err}") from err
    tokenizer_id = f"hf-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    return HFTokenizer(hf, tokenizer_id, _eos_token(hf, os.path.dirname(file), file)), text


def import_hf_tokenizer(root, path: str) -> Tokenizer:
    """The tokenizer at `path`, stored under `root` (ROOT/tokenizers/hf-<hash>/) so that
    prepared data names it by content and workers and later runs load it from there."""
    tok, text = read_hf_tokenizer(path)
    directory = tokenizer_dir(root, tok.name)
    if store.read_json(store.join(directory, HF_META)) is None:
        store.write_bytes(store.join(directory, "tokenizer.json"), text.encode())
        store.write_json(store.join(directory, HF_META), dict(eos_token=tok.eos_token,
                                                              source=path))
    return tok


def planned_vocab_size(kind: str, bpe_vocab_size: int) -> int:
    """The vocabulary of tokenizer `kind` (byte, bpe or hf:PATH) before any data is prepared."""
    if kind.startswith("hf:"):
        return read_hf_tokenizer(kind[len("hf:"):])[0].vocab_size
    return ByteTokenizer.vocab_size if kind == "byte" else bpe_vocab_size


# ---------------------------------------------------------------------------------------------
# python -m data.tokenizer train (the parser is built on use: workers import this module)


def _parser() -> cli.Parser:
    from data.dataset import default_root
    from data.settings import DATA
    defaults = DATA.config_dict()
    parser = cli.parser("python -m data.tokenizer", __doc__)
    parser.add_argument("command", choices=("train",), help="train: train a BPE tokenizer")
    parser.add_argument("--corpus", required=True,
                        help="comma-separated sources: registered corpora, jsonl:PATTERN, "
                             "parquet:PATTERN, text:PATTERN, hf:NAME[:CONFIG[:SPLIT]]")
    parser.add_argument("--vocab_size", type=int, required=True,
                        help="tokens, the 256 bytes and <|endoftext|> included")
    parser.add_argument("--out_dir", required=True, old=("--out",),
                        help="directory the tokenizer is written to (tokenizer.json, "
                             "tokenizer_config.json); use it as --config.data.tokenizer=hf:DIR")
    parser.add_argument("--sample_mb", type=float, default=defaults.tokenizer_sample_mb,
                        help="MiB of training documents the BPE is trained on, a sample by "
                             "content hash shared equally among the sources")
    parser.add_argument("--val_fraction", type=float, default=defaults.val_fraction,
                        help="share of the documents held out for validation (the tokenizer "
                             "never sees them); use the runs' data.val_fraction")
    parser.add_argument("--text_field", default=defaults.text_field,
                        help="JSON field or column that holds the documents")
    cli.add_path(parser, "data_root", default=default_root(),
                 use="registered corpora are fetched there, and the tokenizer is stored under "
                     "ROOT/tokenizers/ ($OPTISCALE_DATA_DIR if set, else ~/.cache/optiscale)")
    return parser


def _existing(out_dir: str, name: str) -> Optional[str]:
    """The text of file `name` in the output directory, None if there is none."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise cli.UsageError(f"--out_dir {out_dir} is a file, not a directory; give a directory")
    path = os.path.join(out_dir, name)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read()


def _check_config(out_dir: str, text: Optional[str]) -> None:
    """Refuses a tokenizer_config.json in the output directory that names another EOS."""
    if text is None:
        return
    try:
        eos = json.loads(text).get("eos_token")
    except (ValueError, AttributeError):
        eos = None
    eos = eos.get("content") if isinstance(eos, dict) else eos
    if eos != EOS_TEXT:
        raise cli.UsageError(f"{os.path.join(out_dir, 'tokenizer_config.json')} exists and does "
                             f"not name {EOS_TEXT} as eos_token; pick another --out_dir, or "
                             "delete that file")


@cli.main(ValueError)
def main(argv) -> None:
    args = _parser().parse_args(argv)
    from data import bpe_training, clients, dataset  # the training's imports, for this command only
    out_dir = os.path.abspath(os.path.expanduser(args.out_dir))
    existing = _existing(out_dir, "tokenizer.json")
    config = _existing(out_dir, "tokenizer_config.json")
    _check_config(out_dir, config)
    try:
        specs = [spec.strip() for spec in args.corpus.split(",")]
        plan = bpe_training.bpe_plan(dataset.local_root(args.data_root), specs,
                                     vocab_size=args.vocab_size, val_fraction=args.val_fraction,
                                     sample_mb=args.sample_mb, text_field=args.text_field)
        found = bpe_training.find_bpe(args.data_root, plan)
        stored = (store.read_bytes(store.join(tokenizer_dir(args.data_root, found),
                                              "tokenizer.json")) if found else None)
        if existing is not None and (stored is None or stored.decode() != existing):
            raise cli.UsageError(f"{out_dir} holds a tokenizer.json already, not the one these "
                                 "settings give; pick another --out_dir, or delete "
                                 f"{os.path.join(out_dir, 'tokenizer.json')} to replace it")
        tokenizer_id = found or bpe_training.train_bpe_tokenizer(args.data_root, plan)
    except clients.FetchError as err:
        raise cli.UsageError(str(err)) from err
    text = store.read_bytes(store.join(tokenizer_dir(args.data_root, tokenizer_id),
                                       "tokenizer.json")).decode()
    os.makedirs(out_dir, exist_ok=True)
    if existing is None:
        store.write_bytes(os.path.join(out_dir, "tokenizer.json"), text.encode())
    if config is None:
        store.write_json(os.path.join(out_dir, "tokenizer_config.json"),
                         dict(eos_token=EOS_TEXT))
    tok = HFTokenizer(tokenizers.Tokenizer.from_str(text), tokenizer_id)
    how = "found" if found else "trained"
    print(f"tokenizer {tokenizer_id} ({how}; stored in "
          f"{tokenizer_dir(args.data_root, tokenizer_id)}): vocab_size {tok.vocab_size}, "
          f"{EOS_TEXT} = {tok.eos_id}, {len(text.encode()) / 2 ** 20:.1f} MiB tokenizer.json")
    print(f"written to {out_dir}; use it with --config.data.tokenizer=hf:{out_dir} (prepared data "
          f"then goes under tokenizer id hf-{tokenizer_id.rsplit('-', 1)[1]})")


if __name__ == "__main__":
    sys.exit(main())
