"""python -m lm.study: see lm/study/cli.py."""
import sys

from lm.study.cli import main

sys.exit(main())
