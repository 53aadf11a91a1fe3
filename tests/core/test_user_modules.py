"""core/user_modules.py: a user's module named by file or dotted name is imported once and
recorded; one that fails names itself and the cause."""
import sys

import pytest

from core import user_modules
from core.cli import UsageError


def test_specs_are_split_deduplicated_and_files_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert user_modules.parse(["a.b, my.py", "a.b", ""]) == ("a.b", str(tmp_path / "my.py"))
    assert user_modules.parse("") == ()


def test_a_file_is_imported_once_and_a_dotted_name_from_the_path(tmp_path, monkeypatch):
    counter = tmp_path / "counter.py"
    counter.write_text("import builtins\n"
                       "builtins.imported_times = getattr(builtins, 'imported_times', 0) + 1\n")
    import builtins
    monkeypatch.setattr(builtins, "imported_times", 0, raising=False)
    user_modules.import_modules([str(counter), str(counter)])
    user_modules.import_modules(str(counter))
    assert builtins.imported_times == 1
    (tmp_path / "pkg_mine").mkdir()
    (tmp_path / "pkg_mine" / "__init__.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert user_modules.import_modules("pkg_mine") == ("pkg_mine",)
    assert sys.modules["pkg_mine"].VALUE == 7


def test_a_module_that_fails_is_named_with_its_error(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(UsageError, match=r"broken.py' failed to import: RuntimeError: boom"):
        user_modules.import_modules(str(broken))
    with pytest.raises(UsageError, match="not a file"):
        user_modules.import_modules(str(tmp_path / "missing.py"))
    with pytest.raises(UsageError, match="ModuleNotFoundError"):
        user_modules.import_modules("no_such_module_anywhere")
