"""optiscale's tests, one folder per subsystem (data, model, optim, scaling, study, sweep, train)
and docs-level tests here. Fast lane: `python -m pytest -m "not slow" tests`."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
