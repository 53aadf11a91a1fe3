"""Package attributes imported on first use (PEP 562), so that importing a package for its
JAX-free settings (`lm.model.settings`, `optim.hparams`) does not load JAX."""
import importlib
from typing import Callable


def exports(package: str, names: dict[str, str]) -> tuple[Callable, Callable]:
    """`__getattr__` and `__dir__` for `package`, whose attribute `name` is `names[name]`'s
    attribute of the same name (a module path relative to the package, e.g. ".registry")."""
    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name], package)
        return getattr(module, name) if hasattr(module, name) else module

    def __dir__():
        return sorted(names)

    return __getattr__, __dir__
