"""The command line's changes to a study preset: the optimizers and their search spaces
(--optimizers, --search=FILE, --grid), the data (--corpus, --pair_corpus, --eval_corpora,
--tokenizer, --vocab_size) and the ladder (--sizes, --tune_sizes). Each is checked here, before
any run is planned, with an error that names the flag and the fix.

A search file is JSON: optimizer name -> {"grids": {key: [ordered values]}, "start": {key:
value}, "line": [keys searched jointly with the lr]}, each part optional for an optimizer that
has a space (a grid given replaces that key's grid; its start stays if it is on the new grid,
else the grid's middle value) and "grids" with an "lr" grid required for one that has none
(e.g. an optimizer of your own). Keys are `lr`, `warmup` (a fraction of the steps), `grad_clip`
or a field of the optimizer's section; values are used as written (the preset's lr_divisor is
not applied to them).

    {"my_sign_momentum": {"grids": {"lr": [3e-4, 1e-3, 3e-3], "beta": [0.9, 0.95, 0.99]},
                          "start": {"lr": 1e-3, "beta": 0.95}}}
"""
import json
import sys

import ml_collections

from data import sources
from lm.errors import SweepError
from lm.model import ladder
from optim.hparams import HYPERPARAMETERS

PROTOCOL_KEYS = ("lr", "warmup", "grad_clip")  # searched for every optimizer (lm.sweep's AXES)
SPACE_PARTS = ("grids", "start", "line")


def apply(preset, args) -> None:
    """Applies the command line `args` to `preset` in place (see the module docstring)."""
    if args.optimizers:
        preset.optimizers = [name for name in args.optimizers.split(",") if name]
    if args.search:
        for name, space in _read_search_file(args.search).items():
            _set_space(preset, name, space, f"--search={args.search}: {name}")
    for spec in args.grid:
        _set_grid(preset, spec)
    _set_data(preset, args)
    if args.sizes or args.tune_sizes:
        _set_sizes(preset, _sizes(args.sizes, "--sizes") or list(preset.sizes),
                   _sizes(args.tune_sizes, "--tune_sizes"))


def _read_search_file(path: str) -> dict:
    try:
        with open(path) as f:
            spaces = json.load(f)
    except OSError as err:
        raise SweepError(f"--search={path}: cannot be read ({err.strerror}); give a JSON "
                         "file of search spaces (lm/study/overrides.py shows the form)")
    except ValueError as err:  # a JSONDecodeError, or a UnicodeDecodeError (not UTF-8)
        raise SweepError(f"--search={path}: not valid JSON ({err}); lm/study/overrides.py "
                         "shows the form")
    if not isinstance(spaces, dict) or not all(isinstance(v, dict) for v in spaces.values()):
        raise SweepError(f"--search={path}: give an object of optimizer name -> {{\"grids\": "
                         "..., \"start\": ...}} (lm/study/overrides.py shows the form)")
    return spaces


def _set_space(preset, name: str, space: dict, where: str) -> None:
    """One optimizer's space from a search file: grids replaced or added, then starts."""
    if preset.kind != "compare":
        raise SweepError(f"{where}: preset kind {preset.kind!r} tunes no search space")
    if name not in HYPERPARAMETERS:
        raise SweepError(f"{where}: no registered optimizer of that name; --import the module "
                         "that registers it (docs/optimizers.md)")
    unknown = set(space) - set(SPACE_PARTS)
    if unknown:
        raise SweepError(f"{where}: unknown part(s) {', '.join(sorted(unknown))}; a space has "
                         f"{', '.join(SPACE_PARTS)}")
    grids, start = dict(space.get("grids", {})), dict(space.get("start", {}))
    if name not in preset.search:
        if "lr" not in grids:
            raise SweepError(f"{where}: {name} has no search space yet, so its \"grids\" must "
                             "include \"lr\"")
        preset.search[name] = ml_collections.ConfigDict(dict(grids={}, start={}, line=[]))
    for key, grid in grids.items():
        _replace_grid(preset, name, key, grid, where)
    for key, value in start.items():
        if key not in preset.search[name].grids:
            raise SweepError(f"{where}: start value for {key!r}, which has no grid")
        if value not in list(preset.search[name].grids[key]):
            raise SweepError(f"{where}: start {key}={value!r} is not on its grid "
                             f"{list(preset.search[name].grids[key])}")
        preset.search[name].start[key] = value
    if "line" in space:
        missing = [k for k in space["line"] if k not in preset.search[name].grids]
        if missing:
            raise SweepError(f"{where}: \"line\" names keys without a grid: {missing}")
        preset.search[name].line = list(space["line"])


def _set_grid(preset, spec: str) -> None:
    """--grid=NAME:KEY:V,V,...: one grid of an optimizer's search space."""
    parts = spec.split(":")
    if len(parts) != 3 or preset.kind != "compare":
        raise SweepError(f"--grid={spec}: give NAME:KEY:V,V,... (e.g. soap:lr:3e-3,1e-2), "
                         "for a preset that tunes (not cbs)")
    name, key, values = parts
    if name not in preset.search:
        raise SweepError(f"--grid={spec}: no search space for {name!r}; the optimizers' "
                         f"definitions (optim/hparams/) give {', '.join(preset.search)}; "
                         "--search=FILE adds one")
    grids = preset.search[name].grids
    if key not in grids:
        raise SweepError(f"--grid={spec}: {name}'s search space has no {key!r}; it has "
                         f"{', '.join(grids)} (--search=FILE adds a key)")
    kind = type(grids[key][0])
    try:
        grid = [kind(float(v)) if kind is int else kind(v) for v in values.split(",") if v]
    except ValueError:
        raise SweepError(f"--grid={spec}: the values must be {kind.__name__}s")
    _replace_grid(preset, name, key, grid, f"--grid={spec}")


def _replace_grid(preset, name: str, key: str, grid, where: str) -> None:
    """Sets `key`'s grid of `name`'s space, checked against the hyperparameter's definition;
    its start stays if it is on the new grid, else it moves to the grid's middle value."""
    section = HYPERPARAMETERS[name]
    if key not in PROTOCOL_KEYS and key not in section.fields:
        raise SweepError(f"{where}: {key!r} is neither {', '.join(PROTOCOL_KEYS)} nor a "
                         f"hyperparameter of {name} ({', '.join(section.fields)})")
    if not isinstance(grid, list) or not grid:
        raise SweepError(f"{where}: the grid of {key!r} is empty or not a list")
    field = section.fields.get(key)
    for value in grid:
        problem = field.problem(value) if field is not None else ""
        if not problem and key in PROTOCOL_KEYS and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0):
            problem = "is not a number >= 0"
        if problem:
            raise SweepError(f"{where}: {key}={value!r} {problem}")
    space = preset.search[name]
    space.grids[key] = list(grid)
    if space.start.get(key) not in grid:
        space.start[key] = grid[len(grid) // 2]


def _set_data(preset, args) -> None:
    """--corpus, --pair_corpus, --eval_corpora, --tokenizer, --vocab_size. A source given as
    KIND:TARGET (jsonl:GLOB, ...) gets a name (data.sources) that its metrics carry."""
    data = preset.run.data
    if args.tokenizer:
        data.tokenizer = args.tokenizer
    if args.vocab_size:
        data.vocab_size = args.vocab_size
    if args.corpus:
        data.corpus = preset.prose = _named(data, args.corpus)
    if args.pair_corpus:
        preset.code = _named(data, args.pair_corpus)
    extra = [_named(data, spec) for spec in args.eval_corpora.split(",") if spec]
    if args.corpus or args.pair_corpus or extra:
        pairs = (preset.code,) if preset.kind == "compare" else ()
        data.eval_corpora = tuple(dict.fromkeys((preset.prose, *pairs, *extra)))
        if data.tokenizer == "bpe":  # the BPE of the study's own corpora
            data.tokenizer_corpora = tuple(dict.fromkeys((preset.prose, *pairs)))


def check_sources(preset, dry_run: bool) -> None:
    """Every file source the command line named (jsonl:GLOB, ...) matches files: a study is
    refused before it trains (a dry run only warns: it lists the runs of data still to come)."""
    for name, spec in dict(preset.run.data.sources or {}).items():
        source = sources.resolve(name, dict(preset.run.data.sources))
        if source.kind in ("jsonl", "parquet", "text"):
            try:
                sources.list_files(source)
            except sources.SourceError as err:
                if not dry_run:
                    raise SweepError(f"--corpus or --eval_corpora: {err}") from err
                print(f"warning: {err}", file=sys.stderr)


def _named(data, spec: str) -> str:
    """The name `spec` goes by in the run configs: a corpus or named source as it is; another
    source under its derived name (data/sources.py display_name), recorded in data.sources."""
    named = dict(data.sources or {})
    name = sources.display_name(spec, named)
    if name != spec:
        if named.get(name, spec) != spec:
            raise SweepError(f"two sources would be named {name!r} ({named[name]} and {spec}); "
                             "name them in the preset's run.data.sources")
        named[name] = spec
        data.sources = named
    return name


def _sizes(text: str, flag: str) -> list[str]:
    sizes = [s for s in text.split(",") if s]
    for size in sizes:
        if size not in ladder.SIZES:
            raise SweepError(f"{flag}: unknown model size {size!r}; the ladder has "
                             f"{', '.join(ladder.SIZES)} (python -m lm.model.ladder)")
    if len(set(sizes)) != len(sizes):
        raise SweepError(f"{flag}={text}: a size is named twice")
    return sizes


def _set_sizes(preset, sizes: list[str], tune_sizes: list[str]) -> None:
    """The ladder; the preset's other size lists follow it: those that spanned the ladder span
    the new one, the others keep their sizes that are still on it (else the tuning sizes)."""
    if preset.kind == "cbs":
        if tune_sizes:
            raise SweepError("--tune_sizes: the cbs preset tunes the lr at every size; give "
                             "--sizes only")
        preset.sizes = sizes
        return
    old_sizes, old_tune = list(preset.sizes), list(preset.tune_sizes)
    tune = tune_sizes or [s for s in old_tune if s in sizes] or sizes[:len(old_tune)]
    outside = [s for s in tune if s not in sizes]
    if outside:
        raise SweepError(f"--tune_sizes: {', '.join(outside)} not in the ladder "
                         f"({', '.join(sizes)}); add them to --sizes")

    def follow(old: list, fallback: list) -> list:
        return sizes if old == old_sizes else [s for s in old if s in sizes] or fallback

    preset.seed_sizes = [s for s in preset.seed_sizes if s in tune] or tune
    preset.budget_sizes = follow(list(preset.budget_sizes), tune)
    preset.code_sizes = follow(list(preset.code_sizes), sizes)
    preset.sizes, preset.tune_sizes = sizes, tune
