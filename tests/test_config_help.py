"""configs/help.py (`python -m configs.help`): every field of a run config, from every
subsystem's definitions, with its value and its doc."""
from configs import base
from configs import help as config_help


def test_config_help_lists_every_field_with_its_comment(capsys):
    rows = config_help.rows(base.get_config(), config_help.field_docs())
    names = {name for name, _, _ in rows}
    documented = {name: comment for name, _, comment in rows if comment}
    assert {"model.d_model", "schedule.warmup_fraction", "train.profile_steps",
            "mesh.rules.batch", "optimizer.adamw.b2"} <= names
    missing = sorted(names - set(documented) - {n for n in names if n.startswith(
        "optimizer.groups.")})
    assert not missing, f"fields without a doc in their definitions: {missing}"
    assert "warm up over this fraction" in documented["schedule.warmup_fraction"]
    assert "Zhang et al. 2024" in documented["optimizer.weight_average_decay"]
    assert config_help.main(["--match=warmup"]) == 0
    out = capsys.readouterr().out
    assert "schedule.warmup_steps = 100" in out and "model.d_model" not in out
    assert config_help.main(["configs/quickstart.py", "--match=^train.steps"]) == 0
    assert "train.steps = " in capsys.readouterr().out
