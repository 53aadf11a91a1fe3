"""python -m lm.compile: see lm/compile/cli.py. Compiling for a topology needs no TPU backend:
the CPU platform keeps libtpu from looking for chips (unless JAX_PLATFORMS says otherwise)."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from lm.compile import DEFAULT_CONFIG  # noqa: E402
from lm.train.config_checks import exit_on_unknown_keys  # noqa: E402

exit_on_unknown_keys(DEFAULT_CONFIG)  # before cli.py defines --config with its default

from lm.compile.cli import entry_point  # noqa: E402

entry_point()
