"""Every config field with its value and its doc, read from the definitions (core/fields.py):
the model's (lm/model/settings.py), the data's (data/settings.py), the optimizers'
(optim/settings.py, optim/hparams/) and the run's (lm/train/settings.py).

    python -m configs.help                          # configs/base.py's defaults
    python -m configs.help configs/quickstart.py    # another config file's values
    python -m configs.help --match=soap             # fields whose name or doc match
    python -m configs.help --import=examples/laprop.py --match=laprop  # a module's optimizer
"""
import os
import re
import runpy
import sys

import ml_collections

from core import cli, user_modules
from lm.model.settings import MODEL
from lm.train.settings import sections

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "base.py")


def field_docs() -> dict[str, str]:
    """Dotted field name -> its doc, for every defined field of a run config."""
    return {name: doc for section in (MODEL, *sections()) for name, _, doc in section.rows()}


def rows(config: ml_collections.ConfigDict, docs: dict, prefix: str = "") -> list:
    """(dotted name, value, doc) of every leaf field of `config` ("" for a field no definition
    has, such as a parameter group a config file adds)."""
    found = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            found += rows(value, docs, f"{name}.")
        else:
            found.append((name, value, docs.get(name, "")))
    return found


PARSER = cli.parser("python -m configs.help", __doc__)
PARSER.add_argument("config", nargs="?", default=BASE,
                    help="a config file with get_config()")
PARSER.add_argument("--match", default="", help="only fields whose name or doc match this "
                                                "regular expression")
user_modules.add_flag(PARSER)


@cli.main()
def main(argv=None) -> int:
    args = PARSER.parse_args(argv)
    user_modules.import_modules(args.imports)
    if not os.path.exists(args.config):
        raise cli.UsageError(f"config file {args.config!r} does not exist")
    config = runpy.run_path(args.config)["get_config"]()
    pattern = re.compile(args.match, re.IGNORECASE)
    for name, value, doc in rows(config, field_docs()):
        if pattern.search(name) or pattern.search(doc):
            print(f"{name} = {value!r}" + (f"\n    {doc}" if doc else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
