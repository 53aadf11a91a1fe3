"""Every config field with its value and the comment configs/base.py gives it.

    python -m configs.help                          # configs/base.py's defaults
    python -m configs.help configs/quickstart.py    # another config file's values
    python -m configs.help --match=warmup           # fields whose name or comment match

The comments are read from configs/base.py's source: the comment on a field's line, the
comment lines that continue it below, and a comment block directly above it. Optimizer sections
come from the optimizers' registrations (optim/), and are listed with their defaults.
"""
import argparse
import ast
import os
import re
import runpy
import sys

import ml_collections

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "base.py")


def field_comments(path: str = BASE) -> dict[str, str]:
    """Dotted field name -> its comment, from the dict(...) literals of configs/base.py."""
    source = open(path).read()
    lines = source.splitlines()
    comments = {}

    def indent(text: str) -> int:
        return len(text) - len(text.lstrip())

    def is_comment(i: int) -> bool:
        return 0 <= i < len(lines) and lines[i].strip().startswith("#")

    def comment_of(node: ast.keyword) -> str:
        line = node.value.lineno - 1
        inline = lines[line].split("#", 1)[1].strip() if "#" in lines[line] else ""
        depth = indent(lines[line])
        below, i = [], node.value.end_lineno  # continuation lines sit right of the field
        while is_comment(i) and indent(lines[i]) > depth:
            below.append(lines[i].strip().lstrip("#").strip())
            i += 1
        above, i = [], line - 1  # a block at the field's own indentation, directly above
        while is_comment(i) and indent(lines[i]) == depth:
            above.insert(0, lines[i].strip().lstrip("#").strip())
            i -= 1
        return " ".join(part for part in [" ".join(above), inline, " ".join(below)] if part)

    def visit_dict(call: ast.Call, prefix: str) -> None:
        for keyword in call.keywords:
            if keyword.arg is None:
                continue
            name = f"{prefix}{keyword.arg}"
            inner = _dict_call(keyword.value)
            if inner is not None:
                visit_dict(inner, f"{name}.")
            comments[name] = comment_of(keyword)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            inner = _dict_call(node.value)
            if inner is not None:
                visit_dict(inner, f"{node.targets[0].attr}.")
        elif isinstance(node, ast.FunctionDef) and node.name == "data_defaults":
            returned = next(n for n in ast.walk(node) if isinstance(n, ast.Return))
            visit_dict(_dict_call(returned.value), "data.")
    return comments


def _dict_call(node) -> ast.Call | None:
    """The dict(...) call inside `dict(...)` or `ml_collections.ConfigDict(dict(...))`."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict":
        return node
    if isinstance(node, ast.Call) and node.args:
        return _dict_call(node.args[0])
    return None


def rows(config: ml_collections.ConfigDict, comments: dict, prefix: str = "") -> list:
    """(dotted name, value, comment) of every leaf field of `config`."""
    found = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            found += rows(value, comments, f"{name}.")
            continue
        comment = comments.get(name, "")
        if not comment and name.startswith("optimizer.") and name.count(".") == 2:
            comment = f"hyperparameter of optimizer {name.split('.')[1]!r} (optim/)"
        found.append((name, value, comment))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m configs.help",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="?", default=BASE,
                        help="a config file with get_config() (default: configs/base.py)")
    parser.add_argument("--match", default="", help="only fields whose name or comment match "
                                                    "this regular expression")
    args = parser.parse_args(argv)
    if not os.path.exists(args.config):
        print(f"error: config file {args.config!r} does not exist", file=sys.stderr)
        return 2
    config = runpy.run_path(args.config)["get_config"]()
    pattern = re.compile(args.match, re.IGNORECASE)
    for name, value, comment in rows(config, field_comments()):
        if pattern.search(name) or pattern.search(comment):
            print(f"{name} = {value!r}" + (f"\n    {comment}" if comment else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
