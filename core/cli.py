"""The command line of every `python -m` tool: one argparse family, one spelling of each flag,
one name for each kind of path, one way to fail.

    PARSER = cli.parser("python -m data.prepare", __doc__)
    PARSER.add_argument("--vocab_size", type=int, default=8192, help="bpe only")
    cli.add_path(PARSER, "data_root", default=default_root(), old=("--root",))

    @cli.main(ValueError)          # these errors are bad input: `error: ...`, exit status 2
    def main(argv) -> int: ...     # main(argv=None) parses sys.argv[1:]; returns the status

    if __name__ == "__main__":
        sys.exit(main())

Spelling: flags are spelled with underscores (`--dry_run`, `--top_k`), as absl and the run
config's `--config.train.steps` are; the hyphenated spelling (`--dry-run`) is accepted for every
flag. Abbreviations are not. `--help` lists every flag with its default ("required" for a flag
without one).

Paths: one name per kind (PATHS), the same flag in every tool that takes that kind, and no
name for two kinds:
    --workdir     one run's directory (lm.train writes it; lm.sample reads it)
    --runs_dir    a directory of runs: a sweep's (lm.sweep), a study's (lm.study)
    --data_root   the data root: fetched corpora, tokenizers, prepared data (data.*)
    --report_dir  where a report that is not a run goes (scaling.fit, lm.train.coord_check)
`--config` is a run config (FILE[:ARG], lm/train/config_flag.py) wherever it appears.
A tool's spellings from before this convention stay accepted (`old=`; --help names them in the
flag's help), so existing command lines keep working: `--root` (lm.sweep's runs_dir, data.*'s
data_root), `--out` (lm.study's runs_dir; scaling.fit's and coord_check's report_dir), and
lm.sweep's `--config` for its `--sweep` (a sweep file, not a run config).

Failing: bad input prints one line, `error: MESSAGE`, on stderr and exits with status 2: the
parser's own errors, `UsageError`, and the error types a tool names in `main(...)`.

Progress: `progress` is a tqdm bar on a terminal and, where stderr is a log, a line a minute.
"""
import argparse
import copy
import functools
import sys
from typing import Callable, Iterable, Sequence

import tqdm

PATHS = {
    "workdir": "one run's directory (config.json, metrics.jsonl, checkpoints/): a path or a "
               "gs:// URL",
    "runs_dir": "a directory of runs (a sweep's or a study's, each run in its own workdir)",
    "data_root": "the data root (corpora/, tokenizers/, prepared/): a path or a gs:// URL",
    "report_dir": "the directory the report is written to",
    "hf_dir": "a Hugging Face model directory (config.json, model.safetensors, the tokenizer's "
              "files): a local path",
}
LINE_SECONDS = 60  # a progress line's period where stderr is not a terminal


class UsageError(Exception):
    """Bad input: the tool prints `error: MESSAGE` and exits with status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with this module's conventions (see `parser`)."""

    def __init__(self, prog: str, description: str):
        super().__init__(prog=prog, description=description, allow_abbrev=False,
                         formatter_class=_HelpWithDefaults)
        self.old_names: dict[str, str] = {}

    def add_argument(self, *names, old: Sequence[str] = (), **kwargs):
        """argparse's add_argument; `old`: earlier spellings, still accepted (--help names them
        after the help text, not as flags)."""
        if old:
            kwargs["help"] = f"{kwargs.get('help') or ''} (also {', '.join(old)})".lstrip()
        action = super().add_argument(*names, **kwargs)
        for name in old:
            self.old_names[name] = action.option_strings[0]
        return action

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(self._canonical(args), namespace)

    def error(self, message: str):
        raise UsageError(f"{message} (`{self.prog} --help` lists the flags)")

    def _canonical(self, args: list[str]) -> list[str]:
        """`args` with hyphenated and old spellings of flags replaced by the canonical ones."""
        known = {name for action in self._actions for name in action.option_strings}
        spellings = {name.replace("_", "-"): name for name in known if name.startswith("--")}
        spellings.update(self.old_names)
        spellings.update({old.replace("_", "-"): new for old, new in self.old_names.items()})
        out = []
        for i, arg in enumerate(args):
            if arg == "--":
                return out + args[i:]
            name, eq, value = arg.partition("=")
            out.append(spellings[name] + eq + value if name not in known and name in spellings
                       else arg)
        return out


class _HelpWithDefaults(argparse.RawDescriptionHelpFormatter):
    """Each flag's help ends with "(default: VALUE)" or "(required)", unless it says
    "(default" already."""

    def _format_action(self, action):
        if action.option_strings and action.default is not argparse.SUPPRESS:
            action = copy.copy(action)
            text = action.help or ""
            if "(default" not in text:
                note = ("required" if action.required else
                        "default: ''" if action.default == "" else "default: %(default)s")
                action.help = f"{text} ({note})" if text else f"({note})"
        return super()._format_action(action)


def parser(prog: str, description: str) -> Parser:
    """The parser of tool `prog` ("python -m lm.sweep"); `description`: its module docstring."""
    return Parser(prog, description)


def add_path(parser: Parser, kind: str, *, default: str | None = None, required: bool = False,
             old: Sequence[str] = (), use: str = "") -> argparse.Action:
    """Adds `--KIND`, a path of one of the PATHS kinds, described the same in every tool
    (`use`: what this tool does with it)."""
    text = PATHS[kind] + (f"; {use}" if use else "")
    return parser.add_argument(f"--{kind}", default=default, required=required, old=old,
                               help=text, metavar=kind.upper())


def main(*errors: type[BaseException], describe: Callable[[BaseException], str] = str):
    """Decorates a tool's `main(argv) -> int | None` into `main(argv=None) -> int` (argv:
    sys.argv[1:] when None; None returned: 0). UsageError and the `errors` it raises print
    `error: describe(err)` and return 2."""
    def decorate(body: Callable[[list[str]], int | None]) -> Callable[..., int]:
        @functools.wraps(body)
        def run(argv: Sequence[str] | None = None) -> int:
            try:
                status = body(sys.argv[1:] if argv is None else list(argv))
            except (UsageError, *errors) as err:
                return fail(describe(err) if not isinstance(err, UsageError) else str(err))
            return 0 if status is None else status
        return run
    return decorate


def fail(message: str, status: int = 2) -> int:
    """Prints `error: MESSAGE` on stderr; returns `status` (the tool's exit status)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return status


def progress(iterable: Iterable | None = None, **kwargs) -> tqdm.tqdm:
    """tqdm(iterable, **kwargs) on stderr: a live bar on a terminal; elsewhere (a log, a pipe)
    one line every LINE_SECONDS, none for a phase shorter than that."""
    if sys.stderr.isatty():
        return tqdm.tqdm(iterable, **{"file": sys.stderr, "dynamic_ncols": True, **kwargs})
    return tqdm.tqdm(iterable, **{**kwargs, "file": _Lines(sys.stderr),
                                  "mininterval": LINE_SECONDS, "delay": LINE_SECONDS})


class _Lines:
    """A stream for tqdm that turns each redraw into a line of its own."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()
