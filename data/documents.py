"""The document file format: JSON Lines, one `{"source": ..., "text": ...}` object per document.

Fetched corpora (`ROOT/corpora/NAME/docs.jsonl`) and the committed samples
(`data/samples/NAME.jsonl`) share it. `source` says where a document came from (package and
path); only `text` is used for training.
"""
import json
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple


class Document(NamedTuple):
    source: str  # e.g. "linux-doc-6.1:Documentation/admin-guide/README.rst"
    text: str


def normalize(text: str) -> str:
    """Drops a byte-order mark, turns CRLF/CR line ends into LF and strips surrounding newlines."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return text.strip("\n")


def write(path: Path, docs: Iterable[Document]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc._asdict(), ensure_ascii=False) + "\n")


def read(path: Path) -> Iterator[Document]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            yield Document(obj.get("source", ""), obj["text"])


def read_texts(path: Path) -> Iterator[str]:
    return (doc.text for doc in read(path))
