"""A run's tokenizer (data/tokenizer.py) as Hugging Face tokenizer files, which
`AutoTokenizer.from_pretrained` loads as a PreTrainedTokenizerFast that encodes any text to the
ids optiscale gives it.

The byte tokenizer becomes a byte-level BPE without merges: byte b is the ByteLevel alphabet's
character for b, with id b, and EOS ("<|endoftext|>") is id 256. A BPE or hf: tokenizer is its
own tokenizer.json without its post-processor: optiscale never adds BOS or other special tokens
to a document, so neither does the export, with or without add_special_tokens. As in optiscale,
"<|endoftext|>" inside a text is ordinary text (split_special_tokens), never EOS.
"""
import json

import tokenizers
from tokenizers import AddedToken, decoders, models, pre_tokenizers

from data.tokenizer import EOS_TEXT, ByteTokenizer, Tokenizer


def _byte_alphabet() -> list[str]:
    """The ByteLevel pre-tokenizer's character for each byte 0..255 (GPT-2's bytes_to_unicode):
    printable bytes stand for themselves, the others for 256 + their rank."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _byte_tokenizer_json() -> str:
    vocab = {char: b for b, char in enumerate(_byte_alphabet())}
    hf = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[]))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(EOS_TEXT, special=True, normalized=False)])
    return hf.to_str()


def tokenizer_files(tokenizer: Tokenizer, max_length: int) -> dict[str, str]:
    """{file name: text} of `tokenizer`'s tokenizer.json and tokenizer_config.json."""
    if isinstance(tokenizer, ByteTokenizer):
        text, eos = _byte_tokenizer_json(), EOS_TEXT
    else:
        spec = json.loads(tokenizer.to_str())
        spec["post_processor"] = None
        text, eos = json.dumps(spec, ensure_ascii=False), tokenizer.eos_token
    config = dict(tokenizer_class="PreTrainedTokenizerFast", eos_token=eos, pad_token=eos,
                  split_special_tokens=True, clean_up_tokenization_spaces=False,
                  model_max_length=max_length)
    return {"tokenizer.json": text, "tokenizer_config.json": json.dumps(config, indent=2)}
