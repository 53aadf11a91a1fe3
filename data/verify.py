"""Checks prepared data against the content hashes its meta.json records.

    python -m data.verify PATH [PATH ...]

PATH is a preparation (ROOT/prepared/<tokenizer>/<corpus>) or a data root (every preparation
under ROOT/prepared). Each split is read block by block (`data.store.SHARD` tokens) and each
block's sha256 compared with meta.json's `block_sha256`. `data.prepare` runs this check on
every preparation before it writes meta.json, and training checks each block it reads
(data/integrity.py) and stops at the first damaged one; run this to list every damaged block,
e.g. when a disk or a copy is suspect. Exit status 1 when anything is damaged.
"""
import sys

from core import cli
from data import dataset, store
from data.integrity import block_bounds


def damaged_blocks(path: str, meta: dict) -> list[str]:
    """What in the preparation at `path` does not match `meta` ([] when all of it does)."""
    problems = []
    for name in dataset.SPLITS:
        info = meta["splits"][name]
        hashes = info.get("block_sha256")
        if hashes is None:
            problems.append(f"{name}: prepared before content hashes were recorded; nothing to "
                            "check against (prepare it again to get them)")
            continue
        array_path = store.join(path, f"{name}.zarr")
        try:
            tokens = store.open_tokens(array_path, meta.get("array_driver", "zarr"), cached=False)
        except ValueError as err:
            problems.append(f"{array_path}: cannot be opened ({err})")
            continue
        for i, want in enumerate(hashes):
            start, stop = block_bounds(i, info["num_tokens"])
            try:
                got = store.block_sha256(tokens[start:stop].read().result())
            except ValueError as err:  # a missing or undecodable chunk
                got = f"unreadable: {err}"
            if got != want:
                problems.append(f"{array_path} tokens [{start}, {stop}): "
                                f"{got if got.startswith('unreadable') else 'content differs'}")
    return problems


def _preparations(path: str) -> list[str]:
    if store.read_bytes(store.join(path, "meta.json")) is not None:
        return [path]
    keys = store.list_keys(store.join(path, "prepared"))
    return sorted({store.join(path, "prepared", *k.split("/")[:2]) for k in keys
                   if k.count("/") == 2 and k.endswith("/meta.json")})


def _read_meta(path: str) -> dict:
    """The meta.json of the preparation at `path`; UsageError naming the file and the fix if it
    is damaged (it records the hashes, so nothing can be checked without it)."""
    try:
        meta = store.read_json(store.join(path, "meta.json"))
        if not isinstance(meta, dict) or not isinstance(meta.get("splits"), dict):
            raise ValueError("it has no counts for the splits")
    except ValueError as err:  # a JSONDecodeError or UnicodeDecodeError too
        raise cli.UsageError(f"{path}/meta.json is damaged ({type(err).__name__}: {err}); "
                             f"delete {path} and prepare it again with the `python -m "
                             "data.prepare` command that made it (`python -m "
                             "lm.train.prepare_data --config=...` for a run's data)") from err
    return meta


PARSER = cli.parser("python -m data.verify", __doc__)
PARSER.add_argument("paths", nargs="+", metavar="PATH",
                    help="a data root or one preparation in it")


@cli.main()
def main(argv) -> int:
    args = PARSER.parse_args(argv)
    damaged = False
    for root in args.paths:
        found = _preparations(root)
        if not found:
            print(f"{root}: no preparation (no meta.json) found")
            damaged = True
        for path in found:
            meta = _read_meta(path)
            problems = damaged_blocks(path, meta)
            print(f"{path}: {'damaged' if problems else 'ok'}")
            for problem in problems:
                print(f"  {problem}")
            if problems:
                print(f"  delete {path} and prepare it again (`python -m data.prepare --corpus "
                      f"{meta.get('source', meta['corpus'])} ...`)")
            damaged |= bool(problems)
    return 1 if damaged else 0


if __name__ == "__main__":
    sys.exit(main())
