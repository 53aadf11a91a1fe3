"""The study's hyperparameter laws, without training: synthetic losses, a bowl in log lr around a
known lr*(N, D), stand in for finished runs. The lr(N) and lr(N, D) laws recover the known
exponents within their intervals, an optimizer whose optima sit at the grid's edge is left
unfitted with its bounds named, the final phase centres an untuned size's lr re-tuning on the
tuned sizes' law (the tiny preset's one tuning size keeps the nearest tuned lr), and the paper
preset's launch script labels those runs' lr as predicted."""
import json
import math
import re

import ml_collections
import pytest

from lm.study import cli, hyperparameter_laws, phases, presets, report, runs, tuning
from lm.study.tune import Result, point_id

GRID = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
N_EXPONENT, D_EXPONENT = -0.5, -0.1
# Each (size, multiplier)'s optimum off the law by a fixed factor: the laws' residual scatter
JITTER = {"d32_l2": 1.06, "d48_l2": 0.95, "d64_l2": 1.04, "d96_l2": 0.97}


def _optimum(optimizer: str, size: str, n: float, tokens: float) -> float:
    """lr*: AdamW's on a power law in N and D, placed so that every line of 3 lrs the final
    phase tries brackets it; SOAP's beyond the grid's top."""
    if optimizer == "soap":
        return 1.0
    return 2.7 * n ** N_EXPONENT * (tokens / 2e5) ** D_EXPONENT * JITTER.get(size, 1.0)


class _BowlRuns:
    """A stand-in runs.Catalog: every run finished, with a loss quadratic in log lr about the
    optimizer's lr* at its size and tokens."""

    def __init__(self, preset):
        self.preset = preset
        self.n = {s: runs.non_embedding_params(preset, s) for s in preset.sizes}

    def loss(self, point: dict) -> float:
        tokens = point["steps"] * runs.batch_tokens(self.preset)
        best = _optimum(point["optimizer"], point["size"], self.n[point["size"]], tokens)
        return 2.0 + 0.3 * (math.log(point["lr"]) - math.log(best)) ** 2


def _tuned(preset, losses: _BowlRuns) -> dict:
    """size -> tuning.Tuned at every tuning size: each optimizer's lr tried over its whole grid
    at its start point, the best its lowest loss (what coordinate descent ends with)."""
    tuned = {}
    for size in preset.tune_sizes:
        spaces = {o: tuning.space(preset, o) for o in preset.optimizers}
        results = {}
        for o, space in spaces.items():
            line = {lr: losses.loss(runs.point(preset, size, o, {**space.start, "lr": lr}))
                    for lr in space.grids["lr"]}
            best = {**space.start, "lr": min(line, key=line.get)}
            results[o] = Result(best, line[best["lr"]], [], {
                point_id({**space.start, "lr": lr}): v for lr, v in line.items()}, True)
        tuned[size] = tuning.Tuned(size, results, spaces, {}, math.nan, 0.0)
    return tuned


def _lr_only(preset):
    for o in preset.optimizers:
        preset.search[o] = ml_collections.ConfigDict(dict(grids=dict(lr=list(GRID)),
                                                          start=dict(lr=1e-2), line=[]))
    return preset


def _compare():
    """The compare preset (20 tokens per parameter, tuned at d32_l2 and d48_l2, AdamW's budgets
    at every size) for AdamW and SOAP over the lr only."""
    preset = presets.get_preset("compare")
    preset.update(dict(optimizers=["adamw", "soap"], data_multipliers=[2.0, 4.0]))
    return _lr_only(preset)


@pytest.fixture(scope="module")
def study():
    preset = _compare()
    losses = _BowlRuns(preset)
    tuned = _tuned(preset, losses)
    roles = phases.final_points(preset, tuned)
    return preset, tuned, roles, hyperparameter_laws.analyse(preset, tuned, roles, losses)


def test_the_lr_laws_recover_the_known_exponents_within_their_intervals(study):
    preset, _, _, laws = study
    fits = {fit.name: fit for fit in laws.lr["adamw"]}
    one_x, budgets = fits["lr(N)"], fits["lr(N, D)"]
    assert not one_x.bounds and not budgets.bounds  # every optimum bracketed: all fitted
    assert len(one_x.fitted) == len(preset.sizes)
    assert len(budgets.fitted) == len(preset.sizes) * (1 + len(preset.data_multipliers))
    # At 1x, D = 20 N: lr(N) carries both exponents
    slope = one_x.law.exponents["N"]
    assert slope.low < N_EXPONENT + D_EXPONENT < slope.high < 0
    for name, truth in (("N", N_EXPONENT), ("D", D_EXPONENT)):
        found = budgets.law.exponents[name]
        assert found.low < truth < found.high and found.value == pytest.approx(truth, abs=0.05)
    # The vertex, not the grid: each line's optimum is lr* to the jitter
    d64 = next(line for line in laws.lines if (line.optimizer, line.size, line.multiplier)
               == ("adamw", "d64_l2", 1.0))
    assert d64.source == "ladder" and d64.optimum.status == "vertex"
    assert d64.optimum.value == pytest.approx(_optimum("adamw", "d64_l2", d64.n, d64.tokens))


def test_optima_at_the_grid_edge_are_bounds_and_too_few_sizes_are_not_fitted(study):
    _, _, _, laws = study
    [soap] = laws.lr["soap"]  # no budgets: lr(N) only
    assert soap.law is None and "0 distinct N value(s)" in soap.problem
    assert {line.optimum.status for line in soap.bounds} == {"high edge"}


def test_the_report_section_and_its_json(study, tmp_path):
    preset, _, _, laws = study
    text = report.hyperparameter_section(preset, laws)
    assert text.startswith("## Hyperparameter laws")
    laws_table, predictions = text.split("Predicted lr")
    [row] = [r for r in laws_table.splitlines() if r.startswith("| adamw | lr(N, D) | ")]
    assert f"| {laws.lr['adamw'][1].law.exponents['D']} |" in row  # c with its interval
    assert "| soap | lr(N) | not fitted: lr(N): 0 distinct N value(s)" in text
    assert "d32_l2 (high edge)" in text and ">= 0.1: at the high edge" in text
    assert "At 1x the data grows with N" in text
    predicted = [r for r in predictions.splitlines() if r.startswith("| adamw | lr(N) | ")]
    up = hyperparameter_laws.next_size_up(preset)
    assert [r.split(" | ")[2] for r in predicted] == ["d64_l2", "d96_l2", f"{up} (extrapolated)"]
    record = json.loads(json.dumps(hyperparameter_laws.record(laws), allow_nan=False))
    [adamw] = [f for f in record["lr_laws"]["adamw"] if f["law"] == "lr(N)"]
    assert adamw["exponents"]["N"]["value"] == laws.lr["adamw"][0].law.exponents["N"].value
    assert adamw["formula"].startswith("lr = ")


def test_an_untuned_size_re_tunes_around_the_tuned_sizes_law(study):
    preset, tuned, roles, laws = study
    # The law through the tuning sizes' lr optima (their lines' vertices), at d96_l2
    n = {s: runs.non_embedding_params(preset, s) for s in ("d32_l2", "d48_l2", "d96_l2")}
    vertex = {s: next(line.optimum.value for line in laws.lines if (
        line.optimizer, line.size, line.multiplier) == ("adamw", s, 1.0))
        for s in ("d32_l2", "d48_l2")}
    slope = math.log(vertex["d48_l2"] / vertex["d32_l2"]) / math.log(n["d48_l2"] / n["d32_l2"])
    predicted = vertex["d48_l2"] * (n["d96_l2"] / n["d48_l2"]) ** slope
    ladder = sorted(p["lr"] for p in roles["ladder"]
                    if (p["optimizer"], p["size"]) == ("adamw", "d96_l2"))
    assert ladder == phases.lr_neighbourhood(preset, "adamw", predicted)
    nearest = tuned["d48_l2"].results["adamw"].best["lr"]
    assert ladder != phases.lr_neighbourhood(preset, "adamw", nearest)  # what it was before
    code = next(p for p in roles["code"] if p["size"] == "d96_l2")  # its prose twin: a ladder run
    assert point_id({k: v for k, v in code.items() if k != "dataset"}) in {
        point_id(p) for p in roles["ladder"]}
    notes = phases.launch_notes(preset, tuned)
    note = notes[point_id(next(p for p in roles["ladder"] if p["size"] == "d96_l2"))]
    assert note.startswith("ladder: adamw at d96_l2, lr predicted by lr(N) = ")
    assert f"{predicted:.3g} at d96_l2" in note
    assert note.endswith(f"re-tuned over {', '.join(f'{lr:.3g}' for lr in ladder)}")
    budget = [p for p in roles["budgets"] if p["size"] == "d96_l2"]
    assert {p["lr"] for p in budget} == set(ladder) and "lr predicted" in notes[point_id(budget[0])]
    assert all("the tuned settings of d32_l2" in notes[point_id(p)]
               for p in roles["budgets"] if p["size"] == "d32_l2")


def test_one_tuning_size_keeps_the_nearest_tuned_lr_and_no_note():
    preset = _lr_only(presets.get_preset("tiny"))
    preset.data_multipliers = [2.0]
    tuned = _tuned(preset, _BowlRuns(preset))
    roles = phases.final_points(preset, tuned)
    for optimizer in preset.optimizers:
        lr = tuned["d48_l2"].results[optimizer].best["lr"]
        assert sorted(p["lr"] for p in roles["ladder"] if (p["optimizer"], p["size"]) == (
            optimizer, "d96_l2")) == phases.lr_neighbourhood(preset, optimizer, lr)
    assert not any("predicted" in note for note in phases.launch_notes(preset, tuned).values())


def test_the_paper_presets_launch_script_labels_the_predicted_lrs(tmp_path, monkeypatch):
    """The tuning phase finished (stood in for): the final phase's script carries a note
    before each group of runs whose lr was predicted."""
    losses = {}

    def tuned_runs(preset, out, args, executor):
        losses["runs"] = _BowlRuns(preset)
        return _tuned(preset, losses["runs"])

    monkeypatch.setattr(tuning, "run_tuning", tuned_runs)
    out = tmp_path / "paper"
    assert cli.main([f"--runs_dir={out}", "--preset=paper", "--optimizers=adamw,soap"]) == 0
    lines = (out / "launch_final.sh").read_text().splitlines()
    paper = presets.get_preset("paper")
    checked = 0
    for i, line in enumerate(lines):
        if not line.startswith("./launch_tpu.sh"):
            continue
        size = re.search(r"/final/size=(\w+),", line).group(1)
        optimizer = re.search(r"optimizer=(\w+),", line).group(1)
        label = next(prev for prev in reversed(lines[:i]) if prev.startswith("# "))
        assert label.split(",")[0].endswith(f": {optimizer} at {size}"), (label, line)
        predicted = size not in paper.tune_sizes
        assert ("lr predicted by lr(N) = " in label) == predicted, (label, line)
        checked += predicted
    assert checked >= len(paper.optimizers) * 3  # a 3-lr line at each untuned size at least
