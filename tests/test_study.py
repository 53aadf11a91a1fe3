"""lm.study: bad input refused before training, the speedup arithmetic, and (slow) a miniature
study end to end: both phases, the fits, report.md with its plots, and a rerun that skips."""
import csv
import json
import os
import shlex

import numpy as np
import pytest

from configs import study as presets
from lm.study import cli, phases
from scaling import chinchilla, speedup
from scaling import fit as scaling_fit
from scaling.bootstrap import Estimate


def _fails(tmp_path, capsys, *argv) -> str:
    assert cli.main([f"--out={tmp_path / 'out'}", *argv]) == 2
    return capsys.readouterr().err


def test_unknown_optimizer_missing_baseline_and_empty_grid_are_refused(tmp_path, capsys):
    err = _fails(tmp_path, capsys, "--optimizers=adamw,adamm")
    assert "'adamm' is not a registered optimizer" in err and "soap" in err
    assert "keep it in --optimizers" in _fails(tmp_path, capsys, "--optimizers=soap,lion")
    assert "the grid of 'lion' is empty" in _fails(tmp_path, capsys, "--lr-grid=lion:")
    assert "give NAME:LR,LR" in _fails(tmp_path, capsys, "--lr-grid=lion:fast")
    assert not (tmp_path / "out").exists()  # nothing written before the checks pass


def test_a_directory_that_is_not_this_study_is_refused_and_left_alone(tmp_path, capsys):
    other = tmp_path / "out"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert "not a study directory" in _fails(tmp_path, capsys)
    assert (other / "notes.txt").read_text() == "mine"
    os.remove(other / "notes.txt")
    (other / phases.MANIFEST).write_text(json.dumps({"preset": "small"}))
    assert "holds a study of preset 'small'" in _fails(tmp_path, capsys)


def test_dry_run_lists_both_phases_and_writes_nothing(tmp_path, capsys):
    assert cli.main([f"--out={tmp_path / 'out'}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    preset = presets.get_preset("tiny")
    grid = sum(len(preset.lr_grids[o]) for o in preset.optimizers) * len(preset.sizes)
    assert f"sweep study_prose: {grid} runs" in out
    followup = len(preset.sizes) * len(preset.data_multipliers) + len(preset.code_sizes)
    assert f"sweep study_followup: {followup} runs" in out
    assert not (tmp_path / "out").exists()


def test_paper_preset_writes_launch_commands_instead_of_training(tmp_path):
    out = tmp_path / "paper"
    assert cli.main([f"--out={out}", "--preset=paper", "--optimizers=adamw,soap",
                       "--lr-grid=adamw:1e-3", "--lr-grid=soap:1e-3"]) == 0
    lines = (out / "launch_prose.sh").read_text().splitlines()
    runs = [line for line in lines if line.startswith("./launch_tpu.sh")]
    assert len(runs) == 2 * 5  # 2 optimizers x 5 sizes, one lr each
    assert "--workdir " + str(out / "prose" / "size=d256_l4,optimizer=adamw,lr=0.001") in runs[0]
    assert "--config.model.d_model=256" in runs[0] and "--config.mesh.fsdp=-1" in runs[0]
    assert not (out / "prose").exists() and not (out / "report.md").exists()


def test_data_to_reach_inverts_the_chinchilla_law():
    theta = np.array([400.0, 1500.0, 1.8, 0.34, 0.28])
    n, d = np.array([1e7, 1e8]), np.array([2e9, 5e10])
    loss = chinchilla.chinchilla_loss(n, d, theta)
    np.testing.assert_allclose(speedup.data_to_reach(n, loss, theta), d, rtol=1e-9)
    floor = theta[2] + theta[0] / n**theta[3]  # the infinite-data loss at each size
    assert np.all(np.isinf(speedup.data_to_reach(n, floor - 1e-3, theta)))


def test_effective_data_speedup_reads_the_baseline_law():
    """An optimizer that reaches, on D tokens, the loss AdamW's law gives at 1.5 D has a 1.5x
    speedup; the band comes from the law's bootstrap draws."""
    theta = np.array([400.0, 1500.0, 1.8, 0.34, 0.28])
    draws = np.array([theta * [1, 1.05, 1, 1, 1], theta * [1, 0.95, 1, 1, 1]])
    law = chinchilla.ChinchillaFit(params={}, point=theta, samples=draws, heldout=[],
                                   n_points=10, objective=0.0, n_starts=1, n_agree=1,
                                   level=0.95)
    n, d = 3e7, 6e9
    [est] = speedup.effective_data_speedup(law, n, d, chinchilla.chinchilla_loss(n, 1.5 * d,
                                                                                 theta))
    assert isinstance(est, Estimate) and est.value == pytest.approx(1.5, rel=1e-9)
    assert est.low < 1.5 < est.high


def test_steps_to_target_ratio_interpolates_between_evaluations():
    steps, loss = np.array([100, 200, 300, 400]), np.array([3.0, 2.6, 2.2, 2.0])
    assert speedup.steps_to_target_ratio(steps, loss, 2.4, 400) == pytest.approx(250 / 400)
    assert np.isnan(speedup.steps_to_target_ratio(steps, loss, 1.9, 400))


TINY = presets.get_preset


def _micro_preset(name):
    """The tiny preset at a fraction of its cost: 40 steps, fewer lrs, 20 resamples."""
    preset = TINY("tiny")
    preset.steps, preset.evals, preset.bootstrap, preset.processes = 40, 4, 20, 1
    preset.lr_grids.adamw = [3e-3, 1e-2]
    preset.lr_grids.soap = [3e-3]
    preset.lr_grids.simplified_ademamix = [1e-4]
    preset.run.data.eval_batches = 2
    return preset


@pytest.mark.slow
def test_miniature_study_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "get_preset", _micro_preset)
    out = tmp_path / "study"
    assert cli.main([f"--out={out}"]) == 0
    report = (out / "report.md").read_text()
    for section in ("## Learning-rate grids", "## Final losses", "## Compute laws",
                    "## Effective-data speedup", "## Steps to AdamW's final loss",
                    "## Loss-to-loss", "## Commands"):
        assert section in report
    assert (out / "curves.png").stat().st_size > 0 and (out / "compute.png").stat().st_size > 0
    for fit in ("compute_adamw", "compute_soap", "adamw_data_law",
                "loss_to_loss_train_to_train", "loss_to_loss_train_to_test"):
        assert (out / "fits" / fit / "fit.json").exists(), report
    # Every optimizer has a speedup row at every size, AdamW's own near 1 (its law's residual)
    rows = [line for line in report.splitlines() if line.startswith("| d")
            and ("x [" in line or "inf" in line)]
    assert len(rows) == 3 * 4
    adamw = [float(r.split("|")[4].split("x")[0]) for r in rows if "| adamw |" in r]
    assert all(0.5 < s < 2 for s in adamw), adamw
    # The report's fit commands (the study calls scaling.laws itself) reproduce every fit
    commands = [line for line in report.splitlines() if line.startswith("python -m scaling.fit")]
    assert len(commands) == 3 + 3  # a compute law per optimizer, the data law, 2 loss-to-loss
    monkeypatch.chdir(out)
    for command in [c for c in commands if "fits/compute_" not in c or "compute_adamw" in c]:
        argv = shlex.split(command)[3:]
        name = next(a for a in argv if a.startswith("--out=")).split("/")[-1]
        again = tmp_path / "again" / name
        scaling_fit.run([*(a for a in argv if not a.startswith("--out=")), f"--out={again}"])
        first = json.loads((out / "fits" / name / "fit.json").read_text())
        second = json.loads((again / "fit.json").read_text())
        assert {k: v for k, v in second.items() if k != "notes"} == {
            k: v for k, v in first.items() if k != "notes"}, name
    # A rerun trains nothing and rewrites the report
    os.remove(out / "report.md")
    assert cli.main([f"--out={out}"]) == 0
    for phase in ("prose", "followup"):
        with open(out / phase / "results.csv") as f:
            assert {row["action"] for row in csv.DictReader(f)} == {"skipped"}
    assert (out / "report.md").exists()
