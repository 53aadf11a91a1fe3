"""python -m lm.train: see lm/train/cli.py."""
from lm.train.cli import entry_point

entry_point()
