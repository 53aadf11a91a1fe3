"""Cuts the committed sample corpora: `python -m data.samples [NAME ...] [--data_root DIR]`.

A sample of corpus NAME (default: every corpus that has one) is whole documents of the fetched
corpus, written in corpus order to `data/samples/NAME_sample.jsonl`. Documents of 4-32 KB are
taken in the order of sha256("sample:" + text), a fixed pseudo-random order, until the sample
reaches 200 KB. The lower bound keeps every sample document (so every validation split of a
sample) long enough for short evaluation windows.
"""
import hashlib
import sys

from core import cli
from data import clients, corpora, documents, fetch
from data.dataset import default_root
from data.documents import Document

TARGET_BYTES = 200_000
MIN_DOC_BYTES, MAX_DOC_BYTES = 4_000, 32_000


def cut(docs: list[Document]) -> list[Document]:
    """The deterministic sample of `docs` described in the module docstring."""
    sizes = [len(d.text.encode()) for d in docs]
    candidates = [i for i, size in enumerate(sizes) if MIN_DOC_BYTES <= size <= MAX_DOC_BYTES]
    candidates.sort(key=lambda i: hashlib.sha256(b"sample:" + docs[i].text.encode()).digest())
    chosen, total = [], 0
    for i in candidates:
        if total >= TARGET_BYTES:
            break
        chosen.append(i)
        total += sizes[i]
    return [docs[i] for i in sorted(chosen)]


PARSER = cli.parser("python -m data.samples", __doc__)
PARSER.add_argument("names", nargs="*", metavar="NAME",
                    default=[c.name for c in corpora.CORPORA.values()
                             if f"{c.name}_sample" in corpora.CORPORA],
                    help="corpora to cut a sample of (default: %(default)s)")
cli.add_path(PARSER, "data_root", default=default_root(), old=("--root",),
             use="$OPTISCALE_DATA_DIR if set, else ~/.cache/optiscale")


@cli.main(clients.FetchError, ValueError)
def main(argv) -> None:
    args = PARSER.parse_args(argv)
    for name in args.names:
        docs_path, _ = fetch.ensure_fetched(args.data_root, name)
        sample = cut(list(documents.read(docs_path)))
        path = corpora.get(f"{name}_sample").sample_file
        documents.write(path, sample)
        print(f"{path}: {len(sample)} docs, {path.stat().st_size} bytes")


if __name__ == "__main__":
    sys.exit(main())
