"""Every registered optimizer's study search space (optim/hparams/: Field grids and starts, a
Section's `search` for the protocol keys) is one the study can tune: it has an lr grid, its
grids are ordered, its starts lie on them, its keys are settings of a run, and every value is
one the setting's own definition allows."""
import pytest

import optim
from core.fields import Field, Section, unit_interval
from lm.study import presets
from optim.hparams import HYPERPARAMETERS
from optim.settings import SCHEDULE, SHARED

# The protocol's keys (lm.sweep's shorthands) and the definitions of the settings they set.
PROTOCOL_FIELDS = {"lr": SHARED["lr"], "grad_clip": SHARED["grad_clip"],
                   "warmup": SCHEDULE["warmup_fraction"]}
NAMES = optim.registered_optimizers()


def search_space_problems(section: Section) -> list[str]:
    """What keeps the study from tuning over `section`'s search space ([] when nothing)."""
    space = section.search_space()
    problems = [] if "lr" in space["grids"] else ["no lr grid"]
    problems += [f"line key {key!r} has no grid or is the lr" for key in space["line"]
                 if key not in space["grids"] or key == "lr"]
    for key, grid in space["grids"].items():
        field = PROTOCOL_FIELDS.get(key) or section.fields.get(key)
        if not isinstance(field, Field):
            problems.append(f"{key!r} is neither a protocol key nor a field")
            continue
        if any(a >= b for a, b in zip(grid, grid[1:])):
            problems.append(f"{key} grid {grid} is not strictly increasing")
        if space["start"][key] not in grid:
            problems.append(f"{key} start {space['start'][key]} is off its grid {grid}")
        for value in grid:
            if field.problem(value):
                problems.append(f"{key}={value} {field.problem(value)}")
            if type(value) is not type(field.default) and not (
                    type(value) is int and type(field.default) is float):
                problems.append(f"{key}={value!r} is not a {type(field.default).__name__}")
    return problems


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_optimizer_has_a_search_space_the_study_can_tune(name):
    assert search_space_problems(HYPERPARAMETERS[name]) == []


def test_a_bad_search_space_is_caught():
    bad = Section("optimizer.bad", "a mistyped search space", dict(
        b1=unit_interval(0.9, "momentum", grid=(0.9, 0.8, 1.0)),
        steps=Field(10, "a count", minimum=1, grid=(1, 10.0)),
        alpha=Field(1.0, "a weight", grid=(0.5, 2.0)),
    ), search=dict(lr=((0.0, 1e-2), 3e-3), decay=((0.1,), 0.1)), search_with_lr=("beta",))
    assert set(search_space_problems(bad)) == {
        "line key 'beta' has no grid or is the lr",
        "lr=0.0 must be > 0.0",
        "lr start 0.003 is off its grid [0.0, 0.01]",
        "'decay' is neither a protocol key nor a field",
        "b1 grid [0.9, 0.8, 1.0] is not strictly increasing",
        "b1=1.0 must be < 1.0",
        "steps=10.0 is not a int",
        "alpha start 1.0 is off its grid [0.5, 2.0]",
    }


def test_schedule_free_is_always_warmed_up():
    """Defazio et al. 2024 recommend a warmup for schedule-free AdamW: no grid point skips it."""
    assert min(HYPERPARAMETERS["schedule_free_adamw"].search_space()["grids"]["warmup"]) > 0


def test_the_study_can_tune_every_registered_optimizer():
    assert set(presets.search_spaces()) == set(NAMES)
    for preset in ("tiny", "compare", "small", "paper"):
        assert set(NAMES) <= set(presets.get_preset(preset).search), preset
