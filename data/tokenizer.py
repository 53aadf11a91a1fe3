"""Two tokenizers behind one small interface: `byte` and `bpe`.

Both have `name` (the tokenizer id used in prepared-data paths), `vocab_size`, `eos_id`,
`encode_batch(texts) -> list[list[int]]` and `decode(ids) -> str`, and both round-trip any text
exactly. `decode` renders EOS as "<|endoftext|>"; text that contains that string is encoded as
ordinary text, never as EOS.

- byte: UTF-8 bytes 0..255, EOS = 256, vocab_size 257. Needs no training.
- bpe: Hugging Face `tokenizers` byte-level BPE, trained offline (`train_bpe`); its id is
  `bpe<V>-<first 10 hex digits of sha256(tokenizer.json)>`, and it lives at
  `ROOT/tokenizers/<id>/tokenizer.json`.
"""
import hashlib
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

EOS_TEXT = "<|endoftext|>"


class Tokenizer(Protocol):
    name: str
    vocab_size: int
    eos_id: int

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    name = "byte"
    vocab_size = 257
    eos_id = 256

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(t.encode("utf-8")) for t in texts]

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


class BPETokenizer:
    def __init__(self, hf: tokenizers.Tokenizer, name: str):
        self._hf = hf
        self._hf.encode_special_tokens = True  # "<|endoftext|>" inside a document is plain text
        self.name = name
        self.vocab_size = hf.get_vocab_size()
        self.eos_id = hf.token_to_id(EOS_TEXT)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._hf.decode(list(ids), skip_special_tokens=False)


def train_bpe(batches: Iterable[list[str]], vocab_size: int) -> str:
    """Trains a byte-level BPE on batches of documents; returns its tokenizer.json text.

    Deterministic: the same documents give the same file, whatever the number of threads.
    """
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[EOS_TEXT], show_progress=False)
    hf.train_from_iterator(batches, trainer)
    return hf.to_str()


def bpe_id(vocab_size: int, tokenizer_json: str) -> str:
    return f"bpe{vocab_size}-{hashlib.sha256(tokenizer_json.encode()).hexdigest()[:10]}"


def tokenizer_dir(root, tokenizer_id: str) -> Path:
    return Path(root) / "tokenizers" / tokenizer_id


def load_tokenizer(root, tokenizer_id: str) -> Tokenizer:
    """The tokenizer with id `tokenizer_id` ("byte", or a BPE trained under `root`)."""
    if tokenizer_id == "byte":
        return ByteTokenizer()
    path = tokenizer_dir(root, tokenizer_id) / "tokenizer.json"
    if not path.exists():
        raise FileNotFoundError(f"no tokenizer {tokenizer_id!r} at {path}; `python -m "
                                f"data.prepare --tokenizer bpe ...` trains one")
    return BPETokenizer(tokenizers.Tokenizer.from_file(str(path)), tokenizer_id)
