"""python -m lm.train: see lm/train/cli.py."""
import sys

from lm.train.cli import main

sys.exit(main())
