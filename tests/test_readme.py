"""README.md's set-up commands stay true: CI runs the test command README gives."""
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(path):
    with open(os.path.join(REPO, path)) as f:
        return f.read()


def readme_commands():
    return re.findall(r"```bash\n(python3 -m venv .*)\n```", read("README.md"))


def test_ci_runs_the_readme_test_command():
    main_command, test_command = readme_commands()
    ci_command = test_command.split(" && ", 2)[2]  # after creating and activating the venv
    assert ci_command in read(".ci/run").splitlines()


def test_readme_main_command_runs_the_study():
    main_command, _ = readme_commands()
    module = re.search(r"python -m (\S+) --out=\S+$", main_command)[1]
    assert module == "lm.study"
    assert os.path.exists(os.path.join(REPO, *module.split("."), "__main__.py"))
