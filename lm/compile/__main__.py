"""python -m lm.compile: see lm/compile/cli.py. Compiling for a topology needs no TPU backend:
the CPU platform keeps libtpu from looking for chips (unless JAX_PLATFORMS says otherwise)."""
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from lm.compile.cli import main  # noqa: E402

sys.exit(main())
