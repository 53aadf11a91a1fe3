"""Where documents come from: a source, named by a string wherever a corpus is accepted
(`data.corpus`, `data.eval_corpora`, the keys of `data.mixture`, `python -m data.prepare`).

    en_docs                    a registered corpus (`python -m data.fetch` lists them)
    jsonl:PATTERN              one JSON object per line, the document in field `text_field`
                               (.jsonl, or compressed .jsonl.gz / .jsonl.zst)
    parquet:PATTERN            column `text_field` of parquet files
    text:PATTERN               one document per file (UTF-8)
    hf:NAME[:CONFIG[:SPLIT]]   a Hugging Face dataset (`datasets`): a directory written by
                               `save_to_disk`, else `load_dataset(NAME, CONFIG)`: a hub name
                               (from the local cache, or downloaded) or a local directory of
                               data files; SPLIT defaults to train
    NAME                       a name given to one of the above in `data.sources`

PATTERN is a glob over local paths or any fsspec URL (gs://bucket/... with gcsfs installed;
memory://... in tests). Files are read in sorted order.

A source is cut into shards, pieces of bounded size read independently (byte ranges of
uncompressed JSON lines, row groups of parquet files, files of text, row ranges of a dataset),
so that preparation streams and runs in parallel; the documents of the shards in order are the
documents of the source. Its fingerprint (names, sizes and modification times or checksums of
its files; the manifest's sha256 for a registered corpus) changes whenever its input does.
"""
import contextlib
import dataclasses
import functools
import gzip
import hashlib
import json
import lzma
import os
import re
import zlib
from pathlib import Path
from typing import Iterator, Optional

from data import corpora, fetch
from data.settings import DATA

TEXT_FIELD = DATA["text_field"].default  # data.text_field's default

KINDS = ("jsonl", "parquet", "text", "hf")
SHARD_BYTES = 16 << 20  # input bytes per shard (`plan`): what preparation and the BPE sample read
# Keys of fsspec's file info that change when a file's content does, in order of preference.
_STAMP_KEYS = ("md5Hash", "crc32c", "ETag", "etag", "mtime", "LastModified", "created")


class SourceError(ValueError):
    """A source that cannot be read as documents; the message names the file and the fix."""


@dataclasses.dataclass(frozen=True)
class Source:
    name: str  # its name in prepared-data paths and metric names (eval/<name>/loss)
    spec: str  # as the user wrote it, after `data.sources` names are resolved
    kind: str  # "registered" or one of KINDS
    target: str  # the corpus name, the PATTERN or the NAME[:CONFIG[:SPLIT]]
    text_field: str = TEXT_FIELD

    @property
    def registered(self) -> bool:
        return self.kind == "registered"


@dataclasses.dataclass(frozen=True)
class Shard:
    """Documents of one file: bytes [start, stop) of JSON lines, row group `start` of a parquet
    file, rows [start, stop) of a dataset, or the whole file (stop = -1)."""
    path: str
    start: int = 0
    stop: int = -1


def _derived_name(kind: str, target: str) -> str:
    """A short name for an unnamed source: the last path part without globs and suffixes."""
    parts = [p for p in re.split(r"[/:]", target) if p and not re.search(r"[*?\[]", p)]
    stem = parts[-1].split(".")[0] if parts else kind
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem) or kind


def display_name(spec: str, named: Optional[dict] = None) -> str:
    """The name a source goes by (in metric names: eval/<name>/loss), without checking it."""
    if spec in (named or {}):
        return spec
    kind, sep, target = spec.partition(":")
    return _derived_name(kind, target) if sep and kind in KINDS and target else spec


def resolve(spec: str, named: Optional[dict] = None, text_field: str = TEXT_FIELD) -> Source:
    """The source a string names (module docstring); a SourceError naming the fix if none."""
    named = dict(named or {})
    for name in named:
        if name in corpora.CORPORA:
            raise SourceError(f"data.sources names a source {name!r}, which is also a registered "
                              "corpus; give it another name")
    name = spec
    if spec in named:
        spec = named[spec]
    kind, sep, target = spec.partition(":")
    if sep and kind in KINDS:
        if not target:
            raise SourceError(f"source {spec!r} has no {'NAME' if kind == 'hf' else 'PATTERN'} "
                              f"after {kind}:")
        return Source(display_name(name, named), spec, kind, target, text_field)
    if spec in corpora.CORPORA:
        return Source(spec, spec, "registered", spec)
    raise SourceError(
        f"unknown corpus or source {spec!r}: use a registered corpus ({', '.join(corpora.CORPORA)}"
        f"), a name from data.sources ({', '.join(named) or 'none given'}), or "
        f"jsonl:PATTERN, parquet:PATTERN, text:PATTERN or hf:NAME[:CONFIG[:SPLIT]]")


def resolve_all(specs, named: Optional[dict] = None, text_field: str = TEXT_FIELD) -> dict:
    """spec -> Source for each distinct spec; two different sources with one name are refused,
    since they would share prepared-data paths and metric names."""
    found, by_name = {}, {}
    for spec in dict.fromkeys(specs):
        source = resolve(spec, named, text_field)
        other = by_name.setdefault(source.name, source)
        if other.spec != source.spec:
            example = json.dumps({"a": other.spec, "b": source.spec})
            raise SourceError(f"sources {other.spec!r} and {source.spec!r} are both named "
                              f"{source.name!r}; name them in data.sources, e.g. "
                              f"--config.data.sources='{example}'")
        found[spec] = source
    return found


# ---------------------------------------------------------------------------------------------
# Files and fingerprints


def _filesystem(url: str):
    import fsspec
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise SourceError(f"cannot open {url}: {err} (gs:// needs `pip install gcsfs`)") from err


def list_files(source: Source) -> list[dict]:
    """The files of a pattern source, sorted: [{"path", "size", "stamp"}]."""
    fs, pattern = _filesystem(source.target)
    paths = sorted(p for p in fs.glob(pattern) if fs.isfile(p))
    if not paths:
        raise SourceError(f"{source.kind}:{source.target} matches no file; check the path "
                          "(a glob: *, ?, [..], ** for any depth)")
    files = []
    for path in paths:
        info = fs.info(path)
        stamp = next((str(info[k]) for k in _STAMP_KEYS if info.get(k) is not None), "")
        url = path if "://" not in source.target else fs.unstrip_protocol(path)
        files.append(dict(path=url, size=info["size"], stamp=stamp))
    return files


@functools.lru_cache(maxsize=4)
def hf_dataset(target: str):
    """The `datasets.Dataset` of an hf: source (loaded once per process, memory-mapped)."""
    try:
        import datasets
    except ImportError as err:
        raise SourceError("hf: sources need the `datasets` library: pip install datasets") from err
    name, config, split = (target.split(":") + ["", ""])[:3]
    split = split or "train"
    try:
        saved = ("state.json", "dataset_dict.json")  # what save_to_disk writes
        if os.path.isdir(name) and any(os.path.exists(os.path.join(name, f)) for f in saved):
            ds = datasets.load_from_disk(name)
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise SourceError(f"dataset {name} has splits {list(ds)}, not {split!r}; "
                                      f"use hf:{name}::SPLIT")
                ds = ds[split]
            return ds
        return datasets.load_dataset(name, config or None, split=split)
    except SourceError:
        raise
    except Exception as err:  # datasets raises many types for a missing or unreadable dataset
        raise SourceError(f"cannot load the Hugging Face dataset hf:{target}: {err}") from err


def fingerprint(source: Source, fetch_root) -> dict:
    """What identifies the source's input: {"sha256": hash of the rest, "files": ...}."""
    if source.registered:
        _, manifest = fetch.ensure_fetched(fetch_root, source.target)
        record = dict(kind=source.kind, corpus_sha256=manifest["sha256"])
    elif source.kind == "hf":
        ds = hf_dataset(source.target)
        files = [dict(path=f["filename"], size=os.path.getsize(f["filename"]),
                      stamp=str(os.path.getmtime(f["filename"]))) for f in ds.cache_files]
        record = dict(kind=source.kind, target=source.target, text_field=source.text_field,
                      num_rows=ds.num_rows, dataset_fingerprint=ds._fingerprint, files=files)
    else:
        record = dict(kind=source.kind, text_field=source.text_field, files=list_files(source))
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    return dict(record, sha256=digest)


# ---------------------------------------------------------------------------------------------
# Shards


def _splittable(path: str) -> bool:
    """Uncompressed JSON lines can be cut at byte offsets (each piece starts at a line)."""
    return not path.endswith((".gz", ".zst", ".bz2", ".xz"))


def plan(source: Source, fetch_root, shard_bytes: int) -> list[Shard]:
    """The source's shards in document order, each about `shard_bytes` of input or less (a
    compressed file or a text file is one shard)."""
    if source.registered:
        docs_path, _ = fetch.ensure_fetched(fetch_root, source.target)
        files = [dict(path=str(docs_path), size=Path(docs_path).stat().st_size)]
        kind = "jsonl"
    elif source.kind == "hf":
        ds = hf_dataset(source.target)
        if source.text_field not in ds.column_names:
            raise SourceError(f"hf:{source.target} has no column {source.text_field!r} (columns: "
                              f"{', '.join(ds.column_names)}); set data.text_field")
        per_row = max(1, ds.data.nbytes // max(ds.num_rows, 1))
        rows = max(1, shard_bytes // per_row)
        return [Shard(source.target, a, min(a + rows, ds.num_rows))
                for a in range(0, ds.num_rows, rows)]
    else:
        files, kind = list_files(source), source.kind
    shards = []
    for f in files:
        if kind == "parquet":
            shards += [Shard(f["path"], g) for g in range(_parquet_file(f["path"]).num_row_groups)]
        elif kind == "jsonl" and _splittable(f["path"]):
            shards += [Shard(f["path"], a, min(a + shard_bytes, f["size"]))
                       for a in range(0, f["size"], shard_bytes)]
        else:
            shards.append(Shard(f["path"]))
    return shards


def _parquet_file(path: str):
    import pyarrow.parquet as pq
    fs, local = _filesystem(path)
    try:
        return pq.ParquetFile(fs.open(local, "rb"))
    except Exception as err:  # pyarrow's ArrowInvalid for a damaged file
        raise SourceError(f"{path} is not a readable parquet file ({err}); replace it or "
                          "remove it from the pattern") from err


def _check_text(text, where: str, field: str) -> str:
    if not isinstance(text, str):
        raise SourceError(f"{where}: field {field!r} holds {type(text).__name__}, not text; set "
                          "data.text_field to the field that holds the document")
    if not text:
        raise SourceError(f"{where}: empty document; remove it from the source (an empty "
                          "document has no tokens to train on and would add a lone EOS)")
    return text


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SourceError(f"{where}: not UTF-8 ({err.reason} at byte {err.start}); re-encode the "
                          "file as UTF-8 or remove it from the pattern") from err


@contextlib.contextmanager
def _open_compressed(path: str):
    """The file at `path`, decompressed as its suffix says; a SourceError naming it for a
    truncated or corrupt compressed file (gzip's EOFError and BadGzipFile, zlib's and lzma's
    errors), which would otherwise end a preparation with a traceback."""
    import fsspec
    try:
        with fsspec.open(path, "rb", compression="infer") as f:
            yield f
    except (EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError) as err:
        raise SourceError(f"{path} is damaged: a truncated or corrupt compressed file "
                          f"({type(err).__name__}: {err}); replace it with a whole copy or "
                          "remove it from the pattern") from err


def _jsonl_documents(shard: Shard, field: str) -> Iterator[str]:
    with _open_compressed(shard.path) as f:
        position = shard.start
        if shard.start:  # this piece begins after the line that straddles its start
            f.seek(shard.start - 1)
            position += len(f.readline()) - 1
        while shard.stop < 0 or position < shard.stop:
            line = f.readline()
            if not line:
                break
            where = f"{shard.path} at byte {position}"
            position += len(line)
            if not line.strip():
                continue
            try:
                obj = json.loads(_decode(line, where))
            except json.JSONDecodeError as err:
                raise SourceError(f"{where}: not a JSON object ({err}); each line of a jsonl "
                                  "source is one JSON object") from err
            if not isinstance(obj, dict) or field not in obj:
                fields = ", ".join(obj) if isinstance(obj, dict) else type(obj).__name__
                raise SourceError(f"{where}: no field {field!r} (found: {fields}); set "
                                  "data.text_field to the field that holds the document")
            yield _check_text(obj[field], where, field)


def _parquet_documents(shard: Shard, field: str) -> Iterator[str]:
    parquet = _parquet_file(shard.path)
    if field not in parquet.schema_arrow.names:
        raise SourceError(f"{shard.path} has no column {field!r} (columns: "
                          f"{', '.join(parquet.schema_arrow.names)}); set data.text_field")
    column = parquet.read_row_group(shard.start, columns=[field]).column(0)
    for row, text in enumerate(column.to_pylist()):
        yield _check_text(text, f"{shard.path} row group {shard.start} row {row}", field)


def _text_documents(shard: Shard) -> Iterator[str]:
    with _open_compressed(shard.path) as f:
        yield _check_text(_decode(f.read(), shard.path), shard.path, "text")


def _hf_documents(shard: Shard, field: str) -> Iterator[str]:
    rows = hf_dataset(shard.path).select_columns([field])
    for row in range(shard.start, shard.stop, 1024):
        texts = rows[row:min(row + 1024, shard.stop)][field]
        for i, text in enumerate(texts):
            yield _check_text(text, f"hf:{shard.path} row {row + i}", field)


def documents(source: Source, shard: Shard) -> Iterator[str]:
    """The documents of one shard, in order; a SourceError for a document that cannot be one."""
    if source.registered or source.kind == "jsonl":
        return _jsonl_documents(shard, "text" if source.registered else source.text_field)
    if source.kind == "parquet":
        return _parquet_documents(shard, source.text_field)
    if source.kind == "text":
        return _text_documents(shard)
    return _hf_documents(shard, source.text_field)
