"""Every `python -m` tool follows core/cli.py: `--help` exits 0 and shows each flag's default,
flags are spelled with underscores (the hyphenated spelling still works), each path flag names
one kind of path in every tool, and bad input is one `error:` line with exit status 2."""
import concurrent.futures
import functools
import json
import os
import re
import subprocess
import sys

import pytest
import setuptools

from core import cli
from tests import REPO

MAIN_GUARD = re.compile(r"^if __name__ == [\"']__main__[\"']:", re.MULTILINE)
# Each tool's --help, from one interpreter per batch (imports are most of the time).
HELP_ALL = """
import contextlib, io, json, runpy, sys
found = {}
for module in sys.argv[1:]:
    sys.argv, text = [module, "--help"], io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            status = "no exit"
        except SystemExit as exit:
            status = exit.code or 0
        except Exception as err:
            status = f"{type(err).__name__}: {err}"
    found[module] = dict(status=status, help=text.getvalue())
print(json.dumps(found))
"""


def entry_points() -> list[str]:
    """Every module `python -m` runs in the project's packages (tests aside): a package's
    __main__.py, or a module with a main guard."""
    modules = []
    for package in setuptools.find_packages(REPO, exclude=["tests", "tests.*"]):
        for path in sorted(REPO.joinpath(*package.split(".")).glob("*.py")):
            if path.name == "__main__.py":
                modules.append(package)
            elif path.name != "__init__.py" and MAIN_GUARD.search(path.read_text()):
                modules.append(f"{package}.{path.stem}")
    return sorted(modules)


ENTRY_POINTS = entry_points()


@functools.cache
def helps() -> dict:
    """module -> {status, help}, the batches run in parallel."""
    batches = [ENTRY_POINTS[i::2] for i in range(2)]
    env = dict(os.environ, COLUMNS="1000", JAX_PLATFORMS="cpu")  # help text unwrapped

    def run(batch):
        done = subprocess.run([sys.executable, "-c", HELP_ALL, *batch], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.splitlines()[-1])

    with concurrent.futures.ThreadPoolExecutor(len(batches)) as pool:
        return {k: v for found in pool.map(run, batches) for k, v in found.items()}


def flags(help_text: str) -> dict[str, str]:
    """canonical flag name -> its help text, from a --help's options section."""
    options = help_text.split("\noptions:\n", 1)[1]
    entries = re.split(r"\n(?=  -)", "\n" + options.split("\n\n")[0])
    found = {}
    for entry in filter(str.strip, entries):
        invocation, _, text = entry.strip().partition("  ")
        name = re.findall(r"(?:^|, )(--[\w.-]+)", invocation)[0]  # "-h, --help": --help
        if name != "--help":
            found[name] = " ".join(text.split())
    return found


def test_entry_points_are_found():
    assert {"lm.train", "lm.sweep", "data.prepare", "scaling.fit"} <= set(ENTRY_POINTS)
    assert "core.cli" not in ENTRY_POINTS  # its docstring shows a main guard, indented


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_lists_every_flag_with_its_default(module):
    found = helps()[module]
    assert found["status"] == 0, found
    assert found["help"].startswith(f"usage: python -m {module} ")
    for name, text in flags(found["help"]).items():
        assert "(default" in text or "(required)" in text, (module, name, text)
        assert "-" not in name[2:], f"{module} {name}: canonical flags use underscores"
        assert name not in ("--root", "--out"), f"{module} {name}: a name of two kinds of path"


def test_each_path_flag_means_one_kind_of_path():
    seen = set()
    for module in ENTRY_POINTS:
        for name, text in flags(helps()[module]["help"]).items():
            kind = name[2:]
            if kind in cli.PATHS:
                assert text.startswith(cli.PATHS[kind]), (module, name, text)
                seen.add(kind)
            else:  # no other name for a kind of path
                assert not any(text.startswith(about) for about in cli.PATHS.values()), name
    assert seen == set(cli.PATHS)


def test_hyphenated_and_earlier_spellings_still_work():
    from scaling import fit
    args = fit.PARSER.parse_args(["--table=t.csv", "--law=compute", "--out=reports/x",
                                  "--n-col=N", "--holdout-factor=0", "--drop_highest_loss=2"])
    assert (args.report_dir, args.n_col, args.holdout_factor, args.drop_highest_loss) == (
        "reports/x", "N", 0.0, 2)


def test_bad_input_is_one_error_line_and_status_2(capsys):
    from scaling import fit
    assert fit.main(["--table=t.csv", "--law=compute", "--report_dir=x", "--no_such_flag"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unrecognized arguments: --no_such_flag") and err.count("\n") == 1
    assert fit.main(["--law=compute", "--report_dir=x"]) == 2
    assert "one of the arguments --runs --table is required" in capsys.readouterr().err


def test_progress_is_quiet_off_a_terminal_for_a_short_phase(capsys):
    assert sum(cli.progress(range(5), desc="short")) == 10
    assert capsys.readouterr().err == ""
