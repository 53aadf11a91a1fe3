"""setup.py and constraints.txt: the versions the suite passed with cover every dependency."""
import ast
import os
import re

from tests import REPO


def test_constraints_pin_every_requirement_of_setup_py():
    """constraints.txt (the versions the suite passed with) covers every dependency."""
    root = str(REPO)
    setup = ast.parse(open(os.path.join(root, "setup.py")).read())
    call = next(n for n in ast.walk(setup) if isinstance(n, ast.Call)
                and getattr(n.func, "attr", "") == "setup")
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords
              if k.arg in ("install_requires", "extras_require")}
    required = kwargs["install_requires"] + kwargs["extras_require"]["test"]
    with open(os.path.join(root, "constraints.txt")) as f:
        pinned = {line.split("==")[0].lower().replace("_", "-") for line in f if "==" in line}
    names = {re.split(r"[<>=\[]", r)[0].lower().replace("_", "-") for r in required}
    assert names <= pinned, sorted(names - pinned)
