"""What a run's data settings (`config.data`) need under a data root, whether it is there, and
preparing it all: `python -m lm.train.prepare_data --config=... [--check]` is the command line.

A run reads, under ROOT (`data.root`): its tokenizer (ROOT/tokenizers/<id>/; none for `byte`)
and, for each training source (data.mixture, else data.corpus) and validation source
(data.eval_corpora), ROOT/prepared/<tokenizer_id>/<name>/, complete once its meta.json exists
(`data.dataset`). `check` looks for each of them without preparing, fetching or training
anything, and gives the `python -m data.prepare` command that makes each one missing. A bpe
tokenizer is looked for as `data.prepare.ensure_tokenizer` looks for it (`data.bpe_training`:
`bpe_plan`, `find_bpe`), by a recipe that holds its sources' fingerprints: where a registered
tokenizer corpus is neither pinned nor fetched on this machine, it is UNKNOWN rather than
fetched, and so are the prepared sources, whose directories the tokenizer's id names.
`prepare_all` prepares whatever is missing (`data.prepare.ensure_prepared`, as a run does on
first use), with the registered corpora fetched to a local cache when ROOT is a bucket
(`data.dataset.local_root`). JAX-free.
"""
import dataclasses
import os
import re
import shlex
from typing import Optional

from data import bpe_training, corpora, dataset, prepare, sources, store
from data.settings import DATA
from data.tokenizer import HF_META, read_hf_tokenizer, tokenizer_dir


def training_mixture(data_config) -> dict:
    """{source: weight} of the training data: data.mixture, else {data.corpus: 1}; weights are
    checked before any data is read. A mixture that is not a {source: weight} mapping (a
    command-line value that is no dict literal arrives as a string) is refused by name."""
    given = data_config.mixture or {}
    if not hasattr(given, "items"):
        raise ValueError(f"data.mixture={given!r} is not a {{source: weight}} mapping; write "
                         "it as --config.data.mixture='{\"a\": 0.7, \"b\": 0.3}'")
    mixture = dict(given) or {data_config.corpus: 1.0}
    for source, weight in mixture.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"data.mixture[{source!r}]={weight!r}: weights must be numbers >= 0")
    if not sum(mixture.values()) > 0:
        raise ValueError(f"data.mixture={mixture}: the weights sum to 0; give at least one "
                         "source a positive weight")
    return mixture


def resolve_sources(data_config) -> dict:
    """spec -> data.sources.Source for every training and validation source of a run (names
    checked, no file read)."""
    return sources.resolve_all([*training_mixture(data_config), *data_config.eval_corpora],
                               dict(data_config.sources or {}), data_config.text_field)


def prepare_options(data_config) -> dict:
    """The keyword arguments of `data.prepare.ensure_prepared` for a run's data settings."""
    d = data_config
    return dict(tokenizer=d.tokenizer, vocab_size=d.vocab_size,
                tokenizer_corpora=tuple(d.tokenizer_corpora),
                tokenizer_sample_mb=d.tokenizer_sample_mb, val_fraction=d.val_fraction,
                named_sources=dict(d.sources or {}), text_field=d.text_field, workers=d.workers)


@dataclasses.dataclass(frozen=True)
class Item:
    """One thing a run reads: its tokenizer, or one source's prepared splits."""
    role: str  # "tokenizer", "train", "eval" or "train+eval"
    name: str  # the tokenizer setting, or the source as the config names it
    state: str  # "ok", "MISSING", or "UNKNOWN" (it cannot be looked for on this machine)
    where: str  # its path, or why it has none
    command: Optional[str] = None  # the command that prepares it, when missing (None: none
    # by itself, e.g. a data.sources name, which `python -m data.prepare` does not know)


@dataclasses.dataclass(frozen=True)
class Report:
    root: str
    items: list  # of Item, the tokenizer first

    @property
    def missing(self) -> list:
        """The items not found (MISSING or UNKNOWN)."""
        return [item for item in self.items if item.state != "ok"]

    def text(self, prepare_all: str) -> str:
        """The report as printed: each item, then the commands that prepare what is missing
        (`prepare_all`: the command that prepares everything at once)."""
        width = max(len(item.name) for item in self.items)
        lines = [f"data root {self.root}:"]
        for item in self.items:
            lines.append(f"  {item.role:10} {item.name:{width}}  {item.state:7}  {item.where}")
        missing = self.missing
        if not missing:
            lines.append("everything this config needs is prepared")
            return "\n".join(lines)
        sources_missing = [item for item in missing if item.role != "tokenizer"]
        local = dataset.local_root(self.root)
        lines.append(f"{len(missing)} of {len(self.items)} not found. Prepare "
                     + ("them" if len(missing) > 1 else "it")
                     + (f" (registered corpora are fetched to {local}, the rest is written to "
                        f"{self.root}):" if local != str(self.root) else ":"))
        if sources_missing and all(item.command for item in sources_missing):
            # the first one trains (or imports) a missing tokenizer
            lines += [f"  {item.command}" for item in sources_missing]
            lines.append("or all at once:")
        lines.append(f"  {prepare_all}")
        return "\n".join(lines)


def _prepare_command(root, source: sources.Source, named: dict, d) -> Optional[str]:
    """The `python -m data.prepare` command that prepares `source` as a run with settings `d`
    reads it; None when the source or a tokenizer source is a data.sources name, which
    `python -m data.prepare` does not know (a prepared directory carries that name)."""
    if source.name in named:
        return None
    words = ["python", "-m", "data.prepare", "--corpus", source.spec, "--tokenizer", d.tokenizer]
    if d.tokenizer == "bpe":
        if any(spec in named for spec in d.tokenizer_corpora):
            return None
        words += ["--vocab_size", str(d.vocab_size),
                  "--tokenizer_corpora", ",".join(d.tokenizer_corpora)]
        if d.tokenizer_sample_mb != prepare.DEFAULTS.tokenizer_sample_mb:
            words += ["--tokenizer_sample_mb", str(d.tokenizer_sample_mb)]
    if d.val_fraction != prepare.DEFAULTS.val_fraction:
        words += ["--val_fraction", str(d.val_fraction)]
    if not source.registered and d.text_field != prepare.DEFAULTS.text_field:
        words += ["--text_field", d.text_field]
    return shlex.join(words + ["--data_root", str(root)])


def _tokenizer(root, d) -> tuple[Optional[str], Item]:
    """(the tokenizer's id, None if it is not trained or imported yet; its Item)."""
    if d.tokenizer == "byte":
        return "byte", Item("tokenizer", "byte", "ok", "built in")
    if d.tokenizer.startswith("hf:"):
        tok, _ = read_hf_tokenizer(d.tokenizer[len("hf:"):])
        directory = tokenizer_dir(root, tok.name)
        present = store.read_json(store.join(directory, HF_META)) is not None
        return tok.name, Item("tokenizer", d.tokenizer, "ok" if present else "MISSING",
                              directory if present else
                              f"{directory} (imported by the first preparation)")
    name = f"bpe{d.vocab_size} on {','.join(d.tokenizer_corpora)}"
    fetch_root = dataset.local_root(root)
    named = dict(d.sources or {})
    # Its recipe names its sources by fingerprint: a registered corpus's needs it fetched here,
    # a Hugging Face hub dataset's needs it downloaded; neither happens in a check.
    unknown = [spec for spec in d.tokenizer_corpora if not _fingerprinted_here(
        sources.resolve(spec, named, d.text_field), fetch_root)]
    if unknown:
        registered = [s for s in unknown if s in corpora.CORPORA]
        fix = (f" (`python -m data.fetch {' '.join(registered)} --data_root {fetch_root}` "
               "fetches them, as any preparation here does)" if registered else "")
        return None, Item("tokenizer", name, "UNKNOWN",
                          f"not looked for: its recipe needs the fingerprints of "
                          f"{', '.join(unknown)}, not fetched on this machine{fix}")
    plan = bpe_training.bpe_plan(fetch_root, tuple(d.tokenizer_corpora),
                                 vocab_size=d.vocab_size, val_fraction=d.val_fraction,
                                 sample_mb=d.tokenizer_sample_mb, named_sources=named,
                                 text_field=d.text_field)
    found = bpe_training.find_bpe(root, plan)  # data.prepare.ensure_tokenizer's own lookup
    if found is None:
        return None, Item("tokenizer", name, "MISSING",
                          f"{store.join(root, 'tokenizers')}/bpe{d.vocab_size}-... (trained by "
                          "the first preparation)")
    return found, Item("tokenizer", name, "ok", tokenizer_dir(root, found))


def _fingerprinted_here(source: sources.Source, fetch_root) -> bool:
    """Whether `source`'s fingerprint can be taken without fetching or downloading anything."""
    if source.registered:  # pinned, or fetched here (bpe_training's own rule)
        try:
            bpe_training.corpus_sha256(source.target, fetch_root, may_fetch=False)
        except bpe_training.NotFetched:
            return False
        return True
    if source.kind == "hf":  # a local dataset directory, not a hub name
        return os.path.isdir(source.target.split(":")[0])
    return True  # files: listed, not read


def _prepared_meta(root, source: sources.Source, tokenizer_id: str, fetch_root
                   ) -> tuple[str, Optional[dict]]:
    """(the source's prepared directory, its meta.json or None). A registered corpus's
    directory has a fixed name; a pattern source's carries the fingerprint of its files (listed,
    not read); an hf: dataset's is found by its meta.json's source, since fingerprinting it
    would load the dataset."""
    if source.registered:
        name = source.name
    elif source.kind == "hf":
        base = store.join(root, "prepared", tokenizer_id)
        pattern = rf"{re.escape(source.name)}-[0-9a-f]{{12}}/meta\.json"
        for key in sorted(k for k in store.list_keys(base) if re.fullmatch(pattern, k)):
            name = key.split("/")[0]
            meta = dataset.read_meta(root, name, tokenizer_id, source.spec)
            if meta is not None and meta.get("source") == source.spec:
                return dataset.prepared_path(root, tokenizer_id, name), meta
        return dataset.prepared_path(root, tokenizer_id, f"{source.name}-..."), None
    else:
        name = prepare.prepared_name(source, sources.fingerprint(source, fetch_root))
    return dataset.prepared_path(root, tokenizer_id, name), dataset.read_meta(
        root, name, tokenizer_id, source.spec)


def check(data_config, root) -> Report:
    """Whether everything a run with these data settings reads is prepared under `root`;
    prepares, fetches and trains nothing. ValueError: settings a run would refuse."""
    d = data_config
    DATA.check(d)
    found = resolve_sources(d)
    roles = {}
    for spec in training_mixture(d):
        roles[spec] = "train"
    for spec in d.eval_corpora:
        roles[spec] = "train+eval" if roles.get(spec, "eval") != "eval" else "eval"
    named = dict(d.sources or {})
    tokenizer_id, tokenizer_item = _tokenizer(root, d)
    items = [tokenizer_item]
    for spec, source in found.items():
        command = _prepare_command(root, source, named, d)
        if tokenizer_id is None:  # its directory is named by the tokenizer's id
            items.append(Item(roles[spec], spec, tokenizer_item.state,
                              "not looked for: its tokenizer was not found", command))
            continue
        path, meta = _prepared_meta(root, source, tokenizer_id, dataset.local_root(root))
        if meta is not None and meta["val_fraction"] != d.val_fraction:
            items.append(Item(roles[spec], spec, "MISSING",
                              f"{path} was prepared with val_fraction={meta['val_fraction']}, "
                              f"not {d.val_fraction}: delete it to prepare it again", command))
        else:
            items.append(Item(roles[spec], spec, "MISSING" if meta is None else "ok", path,
                              command))
    return Report(str(root), items)


def prepare_all(data_config, root) -> dict:
    """Prepares (fetching and training on first use) everything a run with these data settings
    reads under `root`; returns spec -> data.dataset.PreparedCorpus, opened without reading the
    arrays."""
    DATA.check(data_config)
    options = prepare_options(data_config)
    return {spec: prepare.ensure_prepared(root, spec, **options, read=False)
            for spec in resolve_sources(data_config)}
