"""lm.study: bad input refused before training, dry runs of every preset with their run counts,
the speedup and steps-to-target arithmetic, and (slow) a miniature study end to end (tuning,
the final sweep, fits, report.md and a rerun that trains nothing) and a miniature critical-
batch-size study."""
import csv
import json
import math
import os
import re
import shlex

import ml_collections
import numpy as np
import pytest

from lm.study import cli, phases, presets
from scaling import fit as scaling_fit
from scaling import speedup


def _fails(tmp_path, capsys, *argv) -> str:
    assert cli.main([f"--out={tmp_path / 'out'}", *argv]) == 2
    return capsys.readouterr().err


def test_unknown_optimizer_missing_baseline_and_bad_grids_are_refused(tmp_path, capsys):
    err = _fails(tmp_path, capsys, "--optimizers=adamw,adamm")
    assert "'adamm' is not a registered optimizer" in err and "soap" in err
    assert "keep it in --optimizers" in _fails(tmp_path, capsys, "--optimizers=soap,lion")
    assert "the grid of 'lr' is empty" in _fails(tmp_path, capsys, "--grid=soap:lr:")
    assert "give NAME:KEY:V,V" in _fails(tmp_path, capsys, "--grid=soap:3e-3")
    assert "has no 'b3'" in _fails(tmp_path, capsys, "--grid=soap:b3:0.9")
    assert "must be floats" in _fails(tmp_path, capsys, "--grid=soap:lr:fast")
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


def _dry_run(tmp_path, capsys, preset: str) -> str:
    assert cli.main([f"--out={tmp_path / preset}", f"--preset={preset}", "--dry-run"]) == 0
    assert not (tmp_path / preset).exists()
    return capsys.readouterr().out


FIELD_SET = "adamw,nadamw,muon,kron,mars,adam_mini,scion,dion,normuon,cautious_adamw"


def test_a_dry_run_without_a_runs_dir_lists_a_new_study_of_the_fields_optimizers(
        tmp_path, capsys, monkeypatch):
    """The issue's command: every optimizer of the field's set gets tuning runs from its search
    space's start point, and nothing is written (not even a runs directory)."""
    monkeypatch.chdir(tmp_path)
    assert cli.main([f"--optimizers={FIELD_SET}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for name in FIELD_SET.split(","):
        start = presets.search_spaces()[name]["start"]
        assert re.search(rf"optimizer={name},lr={start['lr']},", out), name
    assert re.search(r"tune/d48_l2: \d+ runs in the first round", out)
    assert os.listdir(tmp_path) == []
    assert "--runs_dir is required" in _fails_without_runs_dir(capsys)


def _fails_without_runs_dir(capsys) -> str:
    assert cli.main(["--optimizers=adamw"]) == 2
    return capsys.readouterr().err


def test_the_compare_preset_tunes_the_fields_optimizer_set():
    assert set(FIELD_SET.split(",")) <= set(presets.get_preset("compare").optimizers)
    assert set(presets.COMPARE_OPTIMIZERS) <= set(presets.search_spaces())


def test_tiny_dry_run_lists_the_first_tuning_round_and_the_final_sweep(tmp_path, capsys):
    out = _dry_run(tmp_path, capsys, "tiny")
    p = presets.get_preset("tiny")
    # Each optimizer's start with its noise seeds, and one grid step each way per key (fewer
    # at an edge; the whole grid of a line key)
    first = int(re.search(r"tune/d48_l2: (\d+) runs in the first round", out).group(1))
    steps = sum(1 + sum((g.index(sp.start[k]) > 0) + (g.index(sp.start[k]) < len(g) - 1)
                        if k not in sp.line else len(g) - 1 for k, g in sp.grids.items())
                for sp in (p.search[o] for o in p.optimizers))
    assert first == steps + p.noise_seeds * len(p.optimizers)
    final = 3 * 3 * 3 + 3 * p.seeds + 3 * len(p.data_multipliers) + 2 * 2 + 4
    assert f"sweep study_final: {final} runs" in out
    assert re.search(r"final: \d+ runs, ~\d+m\d+s in one process", out)


def _table_rows(out: str, prefix: str) -> list[list[str]]:
    """The dry-run table rows whose run name starts with `prefix`, split into columns (run,
    to do, params, non-embedding, steps, tokens, FLOPs, time)."""
    return [line.split() for line in out.splitlines() if line.startswith(prefix)]


def test_compare_dry_run_holds_tokens_per_parameter_fixed(tmp_path, capsys):
    out = _dry_run(tmp_path, capsys, "compare")
    p = presets.get_preset("compare")
    for size in p.tune_sizes:
        assert re.search(rf"tune/{size}: \d+ runs in the first round, ~\S+ in one process", out)
    first = _table_rows(out, "optimizer=adamw,lr=0.01,seed=0,")[0]
    assert int(first[4].replace(",", "")) == round(20 * 24_736 / 1024)  # d32_l2 at 20 tokens/N
    final = _table_rows(out, "size=d96_l2,optimizer=adamw,")
    steps = {int(r[4].replace(",", "")) for r in final if "dataset=" not in r[0]}
    one_x = round(20 * 221_664 / 1024)
    assert steps == {one_x} | {round(m * one_x) for m in p.data_multipliers}
    assert re.search(r"final: \d+ runs, ~\d+h\d+m in one process", out)


def test_cbs_dry_run_gives_every_batch_size_the_same_tokens(tmp_path, capsys):
    out = _dry_run(tmp_path, capsys, "cbs")
    p = presets.get_preset("cbs")
    assert f"cbs: {len(p.sizes) * len(p.batch_sizes) * len(p.lrs)} runs" in out
    rows = _table_rows(out, "size=d32_l2,")
    tokens = [int(r[5].replace(",", "")) for r in rows]
    assert len(rows) == len(p.batch_sizes) * len(p.lrs)
    assert max(tokens) / min(tokens) < 1.01  # 20 x N tokens whatever the batch size


def test_paper_preset_writes_launch_commands_instead_of_training(tmp_path):
    out = tmp_path / "paper"
    assert cli.main([f"--out={out}", "--preset=paper", "--optimizers=adamw,soap",
                     "--grid=adamw:lr:1e-3", "--grid=soap:lr:1e-3"]) == 0
    lines = (out / "launch_tune_d256_l4.sh").read_text().splitlines()
    runs = [line for line in lines if line.startswith("./launch_tpu.sh")]
    p = presets.get_preset("paper")
    first = [k for k in p.search.adamw.grids if k != "lr"] + [
        k for k in p.search.soap.grids if k != "lr"]
    noise = 2 * (p.noise_seeds + 1)  # both optimizers' start points with their seeds
    assert noise + 1 <= len(runs) <= noise + 2 * len(first)
    assert any("--config.model.d_model=256" in r and "--config.mesh.fsdp=-1" in r for r in runs)
    assert not (out / "final").exists() and not (out / "report.md").exists()
    dry = tmp_path / "dry"  # a dry run counts the commands and writes nothing
    assert cli.main([f"--runs_dir={dry}", "--preset=paper", "--dry_run"]) == 0
    assert not dry.exists()


def test_the_data_law_and_its_speedup_recover_a_known_curve():
    tokens = np.array([1e5, 2e5, 4e5, 8e5])
    e, b, beta = 2.0, 60.0, 0.4
    np.testing.assert_allclose(speedup.fit_data_law(tokens, e + b * tokens**-beta),
                               [e, b, beta], rtol=1e-2)
    loss_at = lambda d: e + b * d**-beta  # noqa: E731
    found = speedup.effective_data_speedup(tokens, loss_at(tokens), 0.002, 2e5, loss_at(6e5),
                                           0.001)
    assert found.estimate.value == pytest.approx(3.0, rel=0.05)
    assert found.estimate.low < 3.0 < found.estimate.high and not found.extrapolated
    beyond = speedup.effective_data_speedup(tokens, loss_at(tokens), 0.002, 2e5, loss_at(3e6),
                                            0.001)
    assert beyond.extrapolated and beyond.needed > tokens.max()
    assert math.isinf(speedup.data_for_loss((e, b, beta), e - 0.1))
    with pytest.raises(ValueError, match="3 or more budgets"):
        speedup.fit_data_law(tokens[:2], loss_at(tokens[:2]))


def test_annealed_steps_fraction_interpolates_and_labels_what_it_cannot_reach():
    fraction, note = speedup.annealed_steps_fraction([1.0, 0.5, 0.75], [2.3, 2.5, 2.4], 2.45)
    assert note == "interpolated" and fraction == pytest.approx(np.sqrt(0.5 * 0.75))
    assert speedup.annealed_steps_fraction([0.5, 1.0], [2.5, 2.3], 2.2)[1] == "not reached"
    assert speedup.annealed_steps_fraction([0.5, 1.0], [2.5, 2.3], 2.6)[1] == "below 0.5"


def test_speedup_slope_against_model_size():
    n, s = np.array([1e4, 1e5, 1e6]), np.array([2.0, 1.6, 1.28])
    draws = s * np.exp(np.random.default_rng(0).normal(0, 0.01, (200, 3)))
    slope = speedup.speedup_slope(n, s, draws)
    assert slope.value == pytest.approx(np.log(0.8) / np.log(10), rel=1e-6)
    assert slope.low < slope.value < slope.high < 0


GET_PRESET = presets.get_preset  # before the slow tests patch it


def _micro_preset(name):
    """The compare preset at a fraction of its cost: 30 steps, 2 optimizers, one lr for SOAP,
    two tuning sizes of four, a search of AdamW's lr only."""
    preset = GET_PRESET("compare")  # sizes d32_l2, d48_l2, d64_l2, d96_l2
    preset.tune_sizes = ["d32_l2", "d48_l2"]
    preset.seed_sizes = preset.budget_sizes = ["d48_l2"]
    preset.update(dict(steps=30, tokens_per_param=0.0, evals=5, bootstrap=20, processes=1,
                       noise_seeds=1, seeds=1, data_multipliers=[0.5, 2.0],
                       anneal_fractions=[0.5], optimizers=["adamw", "soap"]))
    preset.search.adamw = ml_collections.ConfigDict(dict(grids=dict(lr=[3e-3, 1e-2]),
                                                         start=dict(lr=1e-2), line=[]))
    preset.search.soap = ml_collections.ConfigDict(dict(grids=dict(lr=[1e-2]),
                                                        start=dict(lr=1e-2), line=[]))
    preset.run.data.eval_batches = 2
    return preset


def _run_micro(tmp_path, monkeypatch, micro, preset: str):
    """Runs study `preset` with `micro` standing in for get_preset; returns its directory."""
    monkeypatch.setattr(presets, "get_preset", micro)
    out = tmp_path / preset
    assert cli.main([f"--out={out}", f"--preset={preset}"]) == 0
    return out


@pytest.mark.slow
def test_miniature_study_end_to_end(tmp_path, monkeypatch, capsys):
    out = _run_micro(tmp_path, monkeypatch, _micro_preset, "compare")
    report = (out / "report.md").read_text()
    for section in ("## Regime", "## Tuning", "Sensitivity", "## Final losses",
                    "## Effective-data speedup", "## Steps to AdamW's final loss",
                    "## Step time", "## Compute laws", "## Loss-to-loss",
                    "## Hyperparameter laws", "## What these numbers support", "## Commands"):
        assert section in report, section
    # The lr optimum of every size's line of lrs, in the report and fits/hyperparameters.json
    laws = json.loads((out / "fits" / "hyperparameters.json").read_text())
    assert {(line["optimizer"], line["size"]) for line in laws["lr_lines"]
            if line["multiplier"] == 1.0} == {(o, s) for o in ("adamw", "soap")
                                              for s in ("d32_l2", "d48_l2", "d64_l2", "d96_l2")}
    assert {f["law"] for f in laws["lr_laws"]["adamw"]} == {"lr(N)", "lr(N, D)"}
    for size in ("d32_l2", "d48_l2"):
        tuned = json.loads((out / "tune" / size / "tuned.json").read_text())
        assert set(tuned["optimizers"]) == {"adamw", "soap"}
        assert {o: len(v) for o, v in tuned["noise"]["losses"].items()} == {"adamw": 2, "soap": 2}
        assert tuned["noise"]["threshold"] >= 0
        assert tuned["optimizers"]["adamw"]["best"]["lr"] in (3e-3, 1e-2)
        with open(out / "tune" / size / "sensitivity.csv") as f:
            rows = list(csv.DictReader(f))
        assert {(r["optimizer"], r["value"]) for r in rows} >= {("adamw", "0.003"),
                                                                 ("adamw", "0.01")}
        assert (out / "tune" / size / "sensitivity.png").stat().st_size > 0
    for fit in ("compute_adamw", "compute_soap"):
        assert (out / "fits" / fit / "fit.json").exists(), report
    for fit in ("loss_to_loss_train_to_train", "loss_to_loss_train_to_test"):
        # 30-step curves may leave a loss below its fitted offset: then the report says so
        assert (out / "fits" / fit / "fit.json").exists() or f"fit {fit} failed" in report
    # AdamW's own speedup over its own law is ~1x and measured inside its budgets
    [adamw] = [line for line in report.splitlines() if line.startswith("| adamw | ")
               and "x [" in line]
    assert 0.5 < float(adamw.split("|")[3].split("x")[0]) < 2
    assert "within AdamW's measured budgets" in adamw
    assert "| d48_l2 | soap | " in report.split("## Steps to")[1]
    # The report's fit commands reproduce the fits (resampled by run through scaling.fit)
    commands = [line for line in report.splitlines() if line.startswith("python -m scaling.fit")]
    assert len(commands) == 2 + 2  # listed whether or not a fit succeeded
    monkeypatch.chdir(out)
    command = next(c for c in commands if "fits/compute_adamw" in c)
    argv = shlex.split(command)[3:]
    again = tmp_path / "again"
    scaling_fit.run([*(a for a in argv if not a.startswith("--report_dir=")),
                     f"--report_dir={again}"])
    first = json.loads((out / "fits" / "compute_adamw" / "fit.json").read_text())
    second = json.loads((again / "fit.json").read_text())
    assert {k: v for k, v in second.items() if k != "notes"} == {
        k: v for k, v in first.items() if k != "notes"}
    # A rerun replays the searches from the finished runs, trains nothing, rewrites the report
    os.remove(out / "report.md")
    capsys.readouterr()
    assert cli.main([f"--out={out}", "--preset=compare"]) == 0
    assert "finished in" not in capsys.readouterr().out
    with open(out / "final" / "results.csv") as f:
        assert {row["action"] for row in csv.DictReader(f)} == {"skipped"}
    assert (out / "report.md").exists()


def _micro_cbs(name):
    preset = GET_PRESET("cbs")
    preset.update(dict(batch_sizes=[4, 8, 16], lrs=[1e-2], tokens_per_param=0.25, evals=8,
                       bootstrap=20, processes=1))
    preset.run.data.eval_batches = 2
    return preset


@pytest.mark.slow
def test_miniature_critical_batch_study(tmp_path, monkeypatch):
    out = _run_micro(tmp_path, monkeypatch, _micro_cbs, "cbs")
    runs = sorted((out / "cbs").glob("size=*"))
    assert len(runs) == 3 * 3
    config = json.loads((runs[0] / "config.json").read_text())
    assert config["schedule"]["name"] == "constant"
    assert config["optimizer"]["weight_average_decay"] == 0.99
    report = (out / "report.md").read_text()
    rows = [line for line in report.splitlines() if re.match(r"\| d\d+_l\d \| \d+ \|", line)]
    assert len(rows) >= 3 * 2  # each size's target is reached by its batch sizes
    for size in ("d32_l2", "d48_l2", "d64_l2"):
        targets = {line.split("|")[4] for line in rows if line.startswith(f"| {size} ")}
        assert len(targets) == 1  # one fixed target per size
    assert ("fits/cbs/critical_batch.png" in report) == (out / "fits" / "cbs" /
                                                          "fit.json").exists()
