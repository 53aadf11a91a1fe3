"""The layers of the project, read from its source with `ast` (nothing is imported): every
import between parts points down LAYERS. Keep LAYERS in sync with docs/layout.md, which states
the same rules:

    configs/     user-facing presets; benchmarks/ measure the library (and use its presets)
    lm.study     the optimizer comparison -> lm.sweep -> lm.train -> lm.model
                 (lm.compile, lm.sample, lm.profile, lm.export and lm.evaluate build on
                 lm.train; lm.hf sits between lm.train and lm.model; lm.errors is below
                 every lm part; only lm.study fits runs with scaling)
    optim, data, scaling   import nothing from lm, configs or benchmarks
    core         the JAX-free foundation (core/run_format.py: the run files that lm.train
                 writes and scaling reads): imports nothing of the project
"""
import ast
from pathlib import Path

from tests import REPO

PACKAGES = ("core", "optim", "data", "scaling", "lm", "configs", "benchmarks")
LOWER = ("core", "optim", "data", "scaling")
LM_BELOW_STUDY = ("core", "optim", "data", "lm.errors")  # no scaling: that is the study's
LIBRARY = LOWER + ("lm", "lm.errors", "lm.model", "lm.hf", "lm.train", "lm.compile",
                   "lm.sample", "lm.profile", "lm.export", "lm.evaluate", "lm.sweep", "lm.study")

# part -> (the other parts it may import, the rule that an import of any other part breaks)
LAYERS = {
    "core": ((), "core imports nothing of the project"),
    "optim": (LOWER, "optim, data and scaling import nothing from lm, configs or benchmarks"),
    "data": (LOWER, "optim, data and scaling import nothing from lm, configs or benchmarks"),
    "scaling": (LOWER, "optim, data and scaling import nothing from lm, configs or benchmarks "
                       "(scaling reads run files through core/run_format.py)"),
    "lm": (("core",), "lm/__init__.py imports only core (core.accelerators, before JAX)"),
    "lm.errors": ((), "lm.errors imports nothing of the project"),
    "lm.model": (LM_BELOW_STUDY,
                 "lm.model imports no other lm part (not train, sweep, study or compile)"),
    "lm.hf": (LM_BELOW_STUDY + ("lm.model",),
              "lm.hf (Hugging Face conversion) imports only lm.model of lm: lm.train uses it "
              "for train.init_from"),
    "lm.train": (LM_BELOW_STUDY + ("lm.model", "lm.hf"),
                 "lm.train imports only lm.model and lm.hf of lm (not sweep, study or compile), "
                 "and not scaling (it owns its run files)"),
    "lm.compile": (LM_BELOW_STUDY + ("lm.model", "lm.train"), "lm.compile builds on lm.train"),
    "lm.sample": (LM_BELOW_STUDY + ("lm.model", "lm.train"), "lm.sample builds on lm.train"),
    "lm.profile": (LM_BELOW_STUDY + ("lm.model", "lm.train"), "lm.profile builds on lm.train"),
    "lm.export": (LM_BELOW_STUDY + ("lm.model", "lm.hf", "lm.train", "lm.sample"),
                  "lm.export builds on lm.sample and lm.hf"),
    "lm.evaluate": (LM_BELOW_STUDY + ("lm.model", "lm.train", "lm.sample"),
                    "lm.evaluate builds on lm.sample and lm.train"),
    "lm.sweep": (LM_BELOW_STUDY + ("lm.model", "lm.train"),
                 "lm.sweep builds on lm.train and does not import lm.study"),
    "lm.study": (LOWER + ("lm.errors", "lm.model", "lm.train", "lm.sweep"),
                 "lm.study -> lm.sweep -> lm.train -> lm.model"),
    "configs": (LIBRARY, "configs is the top: user-facing presets over the library"),
    "benchmarks": (LIBRARY + ("configs",),
                   "benchmarks measure the library; nothing imports them"),
}
TOP_RULE = ("the library imports nothing from configs or benchmarks (a preset or helper it "
            "needs lives in the library layer that uses it)")


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of PACKAGES under `root`."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def part_of(module: str) -> str:
    """The row of LAYERS a module belongs to: lm.<subpackage or module>, else its package."""
    names = module.split(".")
    return ".".join(names[:2]) if names[0] == "lm" and len(names) > 1 else names[0]


def imports_of(module: str, path: Path, modules: dict) -> set[str]:
    """The project modules that `module` imports anywhere in its source (inside functions
    too): `from X import a` counts as X.a when that is a module, else as X."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                     for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # not a module: the one that holds it
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def wrong_way_imports(root: Path) -> list[tuple[str, str, str]]:
    """(importer, imported, rule) for every import that LAYERS does not allow."""
    modules = project_modules(root)
    wrong = []
    for module, path in modules.items():
        allowed, rule = LAYERS[part_of(module)]
        for target in sorted(imports_of(module, path, modules)):
            if part_of(target) not in (part_of(module), *allowed):
                top = part_of(module) in LIBRARY and part_of(target) not in LIBRARY
                wrong.append((module, target, TOP_RULE if top else rule))
    return wrong


def test_every_module_belongs_to_a_layer():
    parts = {part_of(m) for m in project_modules(REPO)}
    assert "lm.train" in parts and "core" in parts
    assert not parts - set(LAYERS), f"add these parts to LAYERS: {sorted(parts - set(LAYERS))}"


def test_imports_point_down_the_layers():
    wrong = wrong_way_imports(REPO)
    assert not wrong, "wrong-way imports:\n" + "\n".join(
        f"  {importer} imports {imported}: {rule}" for importer, imported, rule in wrong)


def test_a_planted_wrong_way_import_is_named(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "lm" / "train").mkdir()
    (tmp_path / "lm" / "train" / "__init__.py").write_text("")
    (tmp_path / "lm" / "train" / "loop.py").write_text(
        "import jax\n\ndef f():\n    from ..study import tune\n")
    (tmp_path / "lm" / "study").mkdir()
    (tmp_path / "lm" / "study" / "__init__.py").write_text("")
    (tmp_path / "lm" / "study" / "tune.py").write_text("from lm.train import loop\n")
    (tmp_path / "scaling" / "runs.py").write_text("from lm.train.loop import f\n")
    (tmp_path / "data" / "prepare.py").write_text("from configs import base\n")
    assert sorted(wrong_way_imports(tmp_path)) == [
        ("data.prepare", "configs", TOP_RULE),
        ("lm.train.loop", "lm.study.tune", LAYERS["lm.train"][1]),
        ("scaling.runs", "lm.train.loop", LAYERS["scaling"][1])]
