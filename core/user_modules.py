"""A user's own code in optiscale's commands, without editing optiscale: `--import=MODULE`
(lm.train, lm.compile, lm.sweep, lm.study, the benchmarks) imports it before anything reads the
config, so an optimizer it registers (`optim.register(name, hyperparameters=Section(...))`,
docs/optimizers.md) is a registered optimizer like the built-in ones.

MODULE is a dotted module name importable here (the current directory is on the path) or the
path of a .py file; several are comma-separated or repeated. A run records them in
`config.train.imports` (files as absolute paths), so every process that builds the run imports
them first: a sweep's worker processes, a Ray task (which needs the module at the same path or
on its PYTHONPATH), a resume.
"""
import importlib
import importlib.util
import os
import sys
from typing import Iterable

from core.cli import Parser, UsageError


def add_flag(parser: Parser) -> None:
    """Adds --import to a tool's parser (its values: `args.imports`)."""
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        metavar="MODULE",
                        help="import a module of your own first (a dotted name or a .py file; "
                             "repeatable), e.g. one registering an optimizer: "
                             "docs/optimizers.md")


def parse(specs: Iterable[str] | str) -> tuple[str, ...]:
    """The modules named by `specs` (strings, each comma-separated), files made absolute, in
    order and without repeats."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    found = []
    for spec in specs:
        for name in (part.strip() for part in spec.split(",")):
            if not name:
                continue
            if _is_file(name):
                name = os.path.abspath(name)
            if name not in found:
                found.append(name)
    return tuple(found)


def import_modules(specs: Iterable[str] | str) -> tuple[str, ...]:
    """Imports every module of `specs` (see `parse`) once per process; returns them. UsageError
    names a module that cannot be imported and why (its own exception included)."""
    names = parse(specs)
    for name in names:
        try:
            _import(name)
        except UsageError:
            raise
        except Exception as err:  # the user's module failed: say which and why
            raise UsageError(f"--import: {name!r} failed to import: {type(err).__name__}: "
                             f"{err}; fix the module, or give a module importable from the "
                             "current directory (or PYTHONPATH) or the path of a .py file"
                             ) from err
    return names


def _is_file(name: str) -> bool:
    return name.endswith(".py") or os.sep in name


def _import(name: str) -> None:
    if not _is_file(name):
        importlib.import_module(name)
        return
    if not os.path.isfile(name):
        raise UsageError(f"--import: {name} is not a file; give the path of a .py file or a "
                         "dotted module name")
    module_name = "optiscale_user_" + "".join(c if c.isalnum() else "_" for c in name)
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before executing: the module may import itself
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
