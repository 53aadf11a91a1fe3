"""README.md and docs/ stay true.

1. CI runs the test command README gives, and README's main command runs the study.
2. Every shell command in a code block of README.md or docs/*.md (```bash, ```sh, ```shell,
   ```console, or an unlabelled block) names something that exists and only flags its tool
   accepts. A command is a line, or a `&&` / `;` / `|` part of one, that starts with
   `python -m MODULE`, `python[3] SCRIPT`, `bash SCRIPT` or `./SCRIPT` (after leading
   `VAR=value` assignments and an `srun`); a trailing `\\` continues it on the next line, `#`
   starts a comment, and in ```console blocks only `$ ` lines are commands. For each:
   - `python -m MODULE`: the module exists, and `python -m MODULE --help` exits 0 (once per
     module). If `--help` lists `--dry_run` or `--dry-run`, the command itself runs with it and
     must exit 0; otherwise each `--flag` of the command must appear in the `--help` output (a
     hyphenated `--a-b` may stand for a listed `--a_b`: core/cli.py accepts both spellings of
     every flag). These runs go through a thread pool, batched (see Checker) so that the test
     takes well under a minute on two cores.
   - `--config.KEY=VALUE` overrides: KEY exists in the `get_config()` of the config file the
     command names with `--config` (configs/base.py when it names none), loaded in a subprocess
     that reports whether it imported JAX.
   - `python[3] SCRIPT`: the script exists. `bash SCRIPT` / `./SCRIPT`: it exists, `--help`
     exits 0 and lists the command's flags; overrides after `--` are checked as above.
   Commands run from a scratch directory that links to the repository's top-level entries, with
   an empty data root, so a dry run writes nothing into the working tree.
3. Relative links between README.md, docs/ and CHANGELOG.md point to files and headings that
   exist, and README links every docs page.

The test prints how many commands it checked.
"""
import concurrent.futures
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC_FILES = ["README.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir(os.path.join(REPO, "docs"))
    if name.endswith(".md"))
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
TIMEOUT_S = 240
WORKERS = max(2, min(8, 2 * (os.cpu_count() or 1)))
FLAG = re.compile(r"(?<![\w-])--[A-Za-z0-9][\w.-]*")


def read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------------------------------------
# 1. README's set-up commands


def readme_commands():
    return re.findall(r"```bash\n(python3 -m venv .*)\n```", read("README.md"))


def test_ci_runs_the_readme_test_command():
    _, test_command = readme_commands()
    ci_command = test_command.split(" && ", 2)[2]  # after creating and activating the venv
    assert ci_command in read(".ci/run").splitlines()


def test_readme_main_command_runs_the_study():
    main_command, _ = readme_commands()
    module = re.search(r"python -m (\S+) --out=\S+$", main_command)[1]
    assert module == "lm.study"
    assert os.path.exists(os.path.join(REPO, *module.split("."), "__main__.py"))


# ---------------------------------------------------------------------------------------------
# 2. Every command in the docs


@dataclasses.dataclass(frozen=True)
class Command:
    where: str          # file:line
    text: str           # the command as written (one logical line, one && part)
    kind: str           # "module", "script", "shell"
    target: str         # the module, or the script's path
    args: tuple         # the arguments after the module or script


def code_blocks(path):
    """(first line number, language, lines) of each fenced code block of `path`."""
    blocks, lines, language, start = [], None, "", 0
    for number, line in enumerate(read(path).splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if lines is None:
                lines, language, start = [], stripped[3:].strip().lower(), number + 1
            else:
                blocks.append((start, language, lines))
                lines = None
        elif lines is not None:
            lines.append(line)
    return blocks


def logical_lines(start, language, lines):
    """(line number, text) of each command line of a block, continuations joined."""
    out, pending, first = [], "", None
    for number, line in enumerate(lines, start):
        text = line.strip()
        if language == "console" and not pending:  # a command starts at a `$ ` prompt
            if not text.startswith("$ "):
                continue
            text = text[2:]
        if first is None:
            first = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        out.append((first, pending + text))
        pending, first = "", None
    if pending:
        out.append((first, pending))
    return out


def split_parts(text):
    """The tokens of each `&&` / `||` / `;` / `|` part of a shell line, comments dropped."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    parts, tokens = [], []
    for token in lexer:
        if token and set(token) <= set(";&|"):
            parts.append(tokens)
            tokens = []
        else:
            tokens.append(token)
    parts.append(tokens)
    return [p for p in parts if p]


def parse_command(where, tokens):
    """A Command for `tokens` if it is one this test checks, else None."""
    while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
        tokens = tokens[1:]  # VAR=value assignments
    if tokens[:1] == ["srun"]:
        tokens = tokens[1:]
    if not tokens:
        return None
    text = shlex.join(tokens)
    head = tokens[0]
    if head in ("python", "python3"):
        if len(tokens) >= 3 and tokens[1] == "-m":
            return Command(where, text, "module", tokens[2], tuple(tokens[3:]))
        if len(tokens) >= 2 and not tokens[1].startswith("-"):
            return Command(where, text, "script", tokens[1], tuple(tokens[2:]))
        return None
    if head == "bash" and len(tokens) >= 2:
        return Command(where, text, "shell", tokens[1], tuple(tokens[2:]))
    if head.startswith("./"):
        return Command(where, text, "shell", head[2:], tuple(tokens[1:]))
    return None


def doc_commands():
    commands = []
    for path in DOC_FILES:
        for start, language, lines in code_blocks(path):
            if language not in SHELL_LANGUAGES:
                continue
            for number, text in logical_lines(start, language, lines):
                try:
                    parts = split_parts(text)
                except ValueError as err:  # unbalanced quotes: not a shell line
                    if text.startswith(("python", "bash", "./")):
                        commands.append(Command(f"{path}:{number}", text, "broken", str(err),
                                                ()))
                    continue
                for tokens in parts:
                    command = parse_command(f"{path}:{number}", tokens)
                    if command:
                        commands.append(command)
    return commands


def flags_of(args):
    """The `--flag` names of `args` (before a bare `--`), without values or overrides."""
    names = []
    for arg in args:
        if arg == "--":
            break
        if arg.startswith("--") and len(arg) > 2 and not arg.startswith("--config."):
            names.append(arg.split("=", 1)[0])
    return names


def overrides_of(args):
    """The dotted keys of the `--config.KEY=VALUE` overrides anywhere in `args`."""
    return [arg.split("=", 1)[0][len("--config."):] for arg in args
            if arg.startswith("--config.")]


def config_spec_of(args):
    """(the `--config` value of `args` (`--config=X` or `--config X`), else configs/base.py;
    the modules its `--import=M` flags import first, which may add config keys)."""
    spec = "configs/base.py"
    for i, arg in enumerate(args):
        if arg.startswith("--config="):
            spec = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(args):
            spec = args[i + 1]
    return spec, tuple(a.split("=", 1)[1] for a in args if a.startswith("--import="))


def listed(flag, help_text):
    """Whether `--help` lists `flag`, in this spelling or as its underscore spelling."""
    names = set(FLAG.findall(help_text))
    return flag in names or "--" + flag[2:].replace("-", "_") in names


def module_exists(module):
    parts = module.split(".")
    in_repo = os.path.join(REPO, *parts)
    if os.path.exists(in_repo + ".py") or os.path.exists(os.path.join(in_repo, "__main__.py")):
        return True
    if os.path.isdir(os.path.join(REPO, parts[0])):
        return False  # one of the project's packages, without that module
    import importlib.util
    return importlib.util.find_spec(parts[0]) is not None


CONFIG_KEYS = r"""
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
from core import user_modules
user_modules.import_modules(sys.argv[3:])
path, _, arg = sys.argv[2].partition(":")
spec = importlib.util.spec_from_file_location("doc_config", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
config = module.get_config(arg) if arg else module.get_config()
keys, free = [], []
def walk(node, prefix):
    for key in node.keys():
        value = node[key]
        name = prefix + key
        keys.append(name)
        if hasattr(value, "keys") and hasattr(value, "items") and type(value).__name__ in (
                "ConfigDict", "FrozenConfigDict"):
            walk(value, name + ".")
        elif isinstance(value, dict):
            free.append(name)
walk(config, "")
print(json.dumps({"keys": keys, "free": free, "jax": "jax" in sys.modules}))
"""


BATCH = r"""
import contextlib, io, json, runpy, sys, traceback
results = []
for argv in json.load(sys.stdin):
    out, status = io.StringIO(), 0
    sys.argv = list(argv)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            if isinstance(stop.code, int) or stop.code is None:
                status = stop.code or 0
            else:
                print(stop.code)
                status = 1
        except BaseException:
            traceback.print_exc()
            status = 1
    results.append([status, out.getvalue()])
print("\n@@BATCH@@" + json.dumps(results))
"""


class Checker:
    """Runs the subprocesses from a scratch directory, each distinct one once.

    `python -m MODULE ARGS` runs are batched: one Python process runs many of them in turn
    (runpy), so JAX and the project are imported once per batch, not once per command. A run
    that does not exit 0 in a batch is run again alone, and that run's result stands, so a
    batch can never make a command fail."""

    def __init__(self, scratch):
        self.scratch = scratch
        self.env = {**os.environ, "JAX_PLATFORMS": "cpu",
                    "OPTISCALE_DATA_DIR": os.path.join(scratch, "data_root"),
                    "PYTHONPATH": os.pathsep.join(
                        p for p in (scratch, os.environ.get("PYTHONPATH")) if p)}
        self.cache, self.lock = {}, threading.Lock()
        self.batched = {}  # (module, *args) -> (status, output) from a batch
        self.processes = 0
        self.configs = {}  # config spec -> whether loading it imported JAX

    def run(self, argv, stdin=None):
        """(exit status, stdout + stderr) of `argv`, cached."""
        key = (tuple(argv), stdin)
        with self.lock:
            entry = self.cache.get(key)
            owner = entry is None
            if owner:
                entry = self.cache[key] = [threading.Event(), None]
        if owner:
            try:
                done = subprocess.run(argv, cwd=self.scratch, env=self.env, input=stdin,
                                      capture_output=True, text=True, timeout=TIMEOUT_S,
                                      check=False)
                entry[1] = (done.returncode, done.stdout + done.stderr)
            except subprocess.TimeoutExpired:
                entry[1] = (None, f"timed out after {TIMEOUT_S} s")
            with self.lock:
                self.processes += 1
            entry[0].set()
        entry[0].wait()
        return entry[1]

    def batch(self, jobs):
        """Runs `jobs` ((module, *args) tuples) in one process; records their results."""
        if not jobs:
            return
        status, output = self.run([sys.executable, "-c", BATCH], json.dumps(jobs))
        _, _, results = output.rpartition("\n@@BATCH@@")
        if status != 0 or not results:
            return  # each job then runs alone
        for job, result in zip(jobs, json.loads(results.splitlines()[0])):
            self.batched[tuple(job)] = tuple(result)

    def module(self, *argv):
        """(exit status, output) of `python -m argv[0] argv[1:]`: the batch's when it exited 0,
        else a run of its own."""
        result = self.batched.get(argv)
        if result is not None and result[0] == 0:
            return result
        return self.run([sys.executable, "-m", *argv])

    def help(self, command):
        if command.kind == "module":
            return self.module(command.target, "--help")
        return self.run(["bash", command.target, "--help"])

    def dry_run(self, command):
        """The command's argv (module first) with the tool's dry-run flag, or None when its
        `--help` (which must have run) lists none."""
        status, help_text = self.help(command)
        if command.kind != "module" or status != 0:
            return None
        names = FLAG.findall(help_text)
        flag = next((f for f in ("--dry_run", "--dry-run") if f in names), None)
        if flag is None:
            return None
        given = any(a in ("--dry_run", "--dry-run") for a in command.args)
        return (command.target, *command.args, *(() if given else (flag,)))

    def config_keys(self, source):
        spec, imports = source
        status, output = self.run([sys.executable, "-c", CONFIG_KEYS, REPO, spec, *imports])
        if status != 0:
            return None, output
        config = json.loads(output.strip().splitlines()[-1])
        if not imports:  # a module of the user's may import JAX; the config alone should not
            with self.lock:
                self.configs[spec] = config["jax"]
        return config, ""

    def problems(self, command):
        """What is wrong with `command` (an empty list when nothing is)."""
        if command.kind == "broken":
            return [f"not a shell line: {command.target}"]
        if command.kind in ("script", "shell"):
            if not os.path.isfile(os.path.join(REPO, command.target)):
                return [f"{command.target} does not exist"]
            if command.kind == "script":
                return self.override_problems(command)
        elif not module_exists(command.target):
            return [f"no module {command.target}"]
        status, help_text = self.help(command)
        if status != 0:
            return [f"`{command.target} --help` exited {status}: {tail(help_text)}"]
        found = self.override_problems(command)
        dry = self.dry_run(command)
        if dry is not None:
            status, output = self.module(*dry)
            if status != 0:
                found.append(f"its dry run ({dry[-1]}) exited {status}: {tail(output)}")
            return found
        for flag in flags_of(command.args):
            if flag not in ("--help", "-h") and not listed(flag, help_text):
                found.append(f"{flag} is not in `{command.target} --help`")
        return found

    def override_problems(self, command):
        keys = overrides_of(command.args)
        if not keys:
            return []
        spec, imports = source = config_spec_of(command.args)
        config, error = self.config_keys(source)
        if config is None:
            return [f"config {spec} did not load: {tail(error)}"]
        known, free = set(config["keys"]), config["free"]
        return [f"--config.{key}: no such key in {spec}" + (
                    f" with {', '.join(imports)} imported" if imports else "") for key in keys
                if key not in known and not any(key.startswith(f + ".") for f in free)]


def tail(text, lines=3):
    return " | ".join(text.strip().splitlines()[-lines:])


@pytest.fixture
def scratch():
    """A directory whose entries link to the repository's top-level entries (not runs/)."""
    with tempfile.TemporaryDirectory(prefix="test_docs_") as path:
        for name in os.listdir(REPO):
            if name not in ("runs", "reports", ".git"):
                os.symlink(os.path.join(REPO, name), os.path.join(path, name))
        os.makedirs(os.path.join(path, "data_root"))
        yield path


def test_every_command_in_the_docs_runs(scratch, capsys):
    commands = doc_commands()
    assert len(commands) > 20, "the extraction found too few commands"
    checker = Checker(scratch)
    modules = sorted({c.target for c in commands
                      if c.kind == "module" and module_exists(c.target)})
    sources = sorted({config_spec_of(c.args) for c in commands if overrides_of(c.args)})
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        # 1. every module's --help, in two batches, and the configs, at once
        helps = [[m, "--help"] for m in modules]
        waiting = [pool.submit(checker.batch, helps[i::2]) for i in range(2)]
        waiting += [pool.submit(checker.config_keys, source) for source in sources]
        concurrent.futures.wait(waiting)
        # 2. the dry runs of the tools that have one, in two batches
        dry = sorted({d for d in pool.map(checker.dry_run, [c for c in commands
                                                             if c.kind == "module"]) if d})
        concurrent.futures.wait([pool.submit(checker.batch, [list(d) for d in dry[i::2]])
                                 for i in range(2)])
        # 3. every command's checks; what failed in a batch reruns alone here
        results = list(pool.map(checker.problems, commands))
    failures = [f"{c.where}: {c.text}\n    " + "\n    ".join(p)
                for c, p in zip(commands, results) if p]
    with capsys.disabled():
        with_jax = sorted(spec for spec, jax in checker.configs.items() if jax)
        print(f"\ntest_docs: checked {len(commands)} commands in {len(DOC_FILES)} files "
              f"({len(modules)} modules, {len(dry)} dry runs, {len(sources)} configs; "
              f"{checker.processes} processes); configs whose get_config() imported JAX: "
              f"{', '.join(with_jax) or 'none'}")
    assert not failures, f"{len(failures)} of {len(commands)} commands fail:\n" + "\n".join(
        failures)


# ---------------------------------------------------------------------------------------------
# 3. Links


def slug(heading):
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    seen, out = {}, set()
    in_code = False
    for line in read(path).splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        match = re.match(r"^#{1,6} (.*)$", line)
        if match:
            base = slug(match[1])
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(path):
    """(link, resolved path, anchor) of each relative markdown link of `path`, code excluded."""
    text = re.sub(r"```.*?```", "", read(path), flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    out = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue  # http:, mailto:
        file, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        out.append((target, resolved, anchor))
    return out


@pytest.mark.parametrize("path", DOC_FILES + ["CHANGELOG.md"])
def test_links_resolve(path):
    broken = []
    for target, resolved, anchor in links(path):
        if not os.path.exists(os.path.join(REPO, resolved)):
            broken.append(f"{target}: no file {resolved}")
        elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved}")
    assert not broken, f"{path}: " + "; ".join(broken)


def test_readme_links_every_docs_page():
    linked = {resolved for _, resolved, _ in links("README.md")}
    missing = [page for page in DOC_FILES[1:] if page not in linked]
    assert not missing, f"README.md does not link {missing}"
