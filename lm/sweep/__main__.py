"""python -m lm.sweep: see lm/sweep/cli.py."""
import sys

from lm.sweep.cli import main

sys.exit(main())
