"""The run config on the command line of lm.train and lm.compile: `--config=FILE[:ARG]` (a
python file with get_config(), and its argument: configs/base.py:d256_l4) and any number of
`--config.KEY=VALUE` overrides (`python -m configs.help` lists the keys).

`--import=MODULE` (repeatable, comma-separated; core/user_modules.py) imports a user's module
first, so its optimizer's keys are known to the overrides; the run records it in
config.train.imports. The tool's core.cli parser takes --config, --import and the tool's own
flags. The overrides go to
ml_collections' config_flags, parsed on a FlagValues of their own (absl's global flags are not
involved), once `check_override_keys` has refused an unknown key by name with its close matches.
"""
import ast

from absl import flags
from ml_collections import config_flags

from core import cli, user_modules
from lm.errors import ConfigError
from lm.train.config_checks import check_override_keys


def add_config(parser: cli.Parser, default: str) -> None:
    """Adds --config (the overrides need no flag: `parse` takes them)."""
    parser.add_argument("--config", default=default, metavar="FILE[:ARG]",
                        help="the run config: a python file with get_config(), ':ARG' its "
                             "argument; --config.KEY=VALUE sets a field (`python -m "
                             "configs.help` lists them)")
    user_modules.add_flag(parser)


def parse(parser: cli.Parser, argv: list[str]):
    """(the tool's flags, the run config with the overrides applied). ConfigError: the config
    cannot be loaded or an override names no field; cli.UsageError: any other bad flag."""
    args, overrides = parser.parse_known_args(argv)
    user_modules.import_modules(args.imports)
    absl_argv = [parser.prog, f"--config={args.config}", *overrides]
    check_override_keys(absl_argv[1:])
    refuse_duplicate_keys(overrides)
    values = flags.FlagValues()
    config = config_flags.DEFINE_config_file("config", None, flag_values=values,
                                             sys_argv=absl_argv)
    try:
        positional = values(absl_argv)[1:]
    except flags.Error as err:
        raise cli.UsageError(f"{err} (`{parser.prog} --help` lists the flags)") from err
    if positional:
        parser.error(f"unrecognized arguments: {' '.join(positional)}")
    import_into(config.value, args.imports)
    return args, config.value


def refuse_duplicate_keys(overrides: list[str]) -> None:
    """ConfigError for a `--config.KEY={...}` whose dict literal names one key twice: the
    parser keeps the last value silently (a mixture {"S": 0.9, "S": 0.0} never samples S)."""
    for arg in overrides:
        name, _, value = arg.partition("=")
        try:
            tree = ast.parse(value.strip(), mode="eval")
        except SyntaxError:
            continue  # not a literal: the field's own check names what it expects
        for node in (n for n in ast.walk(tree) if isinstance(n, ast.Dict)):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            twice = sorted({k for k in keys if keys.count(k) > 1}, key=str)
            if twice:
                raise ConfigError(f"{name} names {', '.join(map(repr, twice))} more than once "
                                  f"({value}); give each key once")


def import_into(config, imports: list[str]) -> None:
    """Imports the modules of config.train.imports and `imports` (--import) and records them all
    in config.train.imports, so that every process building the run imports them."""
    config.train.imports = ",".join(user_modules.import_modules(
        [config.train.imports, *imports]))
