"""scaling/guardrails.py through every law: what each fit used, the refusal of fewer than 3 runs
left to fit, "degenerate fit: " warnings (an estimate on its interval's edge or an optimizer
bound), a validation that predicted nothing, and a good fit that warns of nothing."""
import csv
import json
import re
import sys

import numpy as np
import pytest

from scaling import fit as cli
from scaling import guardrails, laws
from scaling.bootstrap import Estimate
from scaling.table import Table, read_csv
from tests import FIXTURES

# Training FLOPs per token of the ladder d64_l2, d96_l3, d128_l4, d192_l4 (lm.train's model
# lines): held out by 2x, the two largest go, since 15.9 / 2 < 8.26.
LADDER_FLOPS_PER_TOKEN = np.array([2.26e6, 4.57e6, 8.26e6, 15.93e6])
LADDER_PARAMS = np.array([98_624, 332_448, 787_584, 1_771_200])
LADDER_NAMES = ["d64_l2", "d96_l3", "d128_l4", "d192_l4"]
TOKENS = 204_800  # 100 steps of 16 x 128 tokens


def learning_curves(final_loss, points=5, names=LADDER_NAMES, flops=LADDER_FLOPS_PER_TOKEN,
                    params=LADDER_PARAMS) -> Table:
    """A table like scaling.runs.curve_points': `points` validation points of each run, the
    loss falling as (step fraction)^-0.2 to its run's `final_loss`."""
    columns = {"run": [], "name": [], "params_non_embedding": [], "tokens": [], "flops": [],
               "val_loss": []}
    for name, per_token, n, final in zip(names, flops, params, final_loss):
        for fraction in np.arange(1, points + 1) / points:
            columns["run"].append(name)
            columns["name"].append(f"{name}@{fraction:.1f}")
            columns["params_non_embedding"].append(n)
            columns["tokens"].append(TOKENS * fraction)
            columns["flops"].append(per_token * TOKENS * fraction)
            columns["val_loss"].append(final * fraction**-0.2)
    return Table(columns)


def final_losses(floor: float, runs: int = 8, noise: float = 0.005, seed: int = 0) -> Table:
    """One row per run, E + A C^-alpha (E = `floor`) with multiplicative noise."""
    compute = np.geomspace(1e15, 1e21, runs)
    loss = (floor + 355 * compute**-0.15) * np.exp(
        np.random.default_rng(seed).normal(0, noise, runs))
    return Table({"name": [f"r{i}" for i in range(runs)], "params_non_embedding": compute / 1e10,
                  "flops": compute, "val_loss": loss})


def test_a_degenerate_estimate_is_named_with_its_interval_and_the_fix():
    """The issue's E 6.336 in [2.4e-9, 6.336], and each other way an estimate fails."""
    used = guardrails.usage_of("compute law", np.array(LADDER_NAMES), [0, 0, 0, 1],
                               LADDER_FLOPS_PER_TOKEN, "holdout_factor=2", True)
    [line] = guardrails.degenerate({"E": Estimate(6.336, 2.4e-9, 6.336, 0.95)}, [used])
    assert line.startswith("degenerate fit: E = 6.336, 95% interval [2.4e-09, 6.336]: the "
                           "estimate is on its interval's upper edge, so the runs do not pin E "
                           "down")
    assert "Fix: train more sizes or longer runs, or hold out fewer runs" in line
    cases = {"is on its interval's lower edge": Estimate(0.5, 0.5, 2, 0.9),
             "is above its interval": Estimate(3, 1, 2, 0.9),
             "is alone in an interval of zero width": Estimate(3, 3, 3, 0.9),
             "is without a finite interval": Estimate(3, np.nan, np.nan, 0.9),
             "is on the optimizer's bound E >= 0": Estimate(2e-4, 1e-9, 3, 0.9),
             "is on its interval's lower edge and on the optimizer's bound E >= 0":
                 Estimate(1e-11, 1e-11, 5.8, 0.9)}
    for problem, estimate in cases.items():
        [line] = guardrails.degenerate({"E": estimate}, [used], lower_bounds={"E": 0.0})
        assert problem in line, (problem, line)
    healthy = {"E": Estimate(1.8, 1.7, 1.9, 0.95), "alpha": Estimate(0.3, 0.2, 0.5, 0.95),
               "A": Estimate(41.2, 17.5, 1.16e13, 0.95)}  # 2.4x above an edge 12 decades wide
    assert guardrails.degenerate(healthy, [used], lower_bounds={"E": 0.0}) == []


@pytest.mark.parametrize("law", [laws.compute, laws.chinchilla])
def test_two_runs_left_to_fit_are_refused_with_a_factor_that_leaves_three(law):
    """The issue's ladder: 2x holds out d128_l4 and d192_l4. The suggested factor holds out
    d192_l4 alone and fits the other three."""
    table = learning_curves([6.52, 6.09, 5.95, 5.80])
    options = laws.FitOptions(bootstrap=5)
    with pytest.raises(ValueError) as refused:
        law(table, options=options)
    message = str(refused.value)
    assert "2 runs (d64_l2, d96_l3) left to fit after holding out 2 runs (d128_l4, d192_l4) by " \
           "holdout_factor=2" in message
    assert "holdout_factor=0, none" in message
    factor = float(re.search(r"holdout_factor=([\d.]+) holds out only the largest",
                             message).group(1))
    if law is laws.compute:
        fitted = law(table, options=laws.FitOptions(bootstrap=5, holdout_factor=factor))
        [used] = fitted.usage
        assert used.fitted == tuple(LADDER_NAMES[:3]) and used.held == ("d192_l4",)
        assert used.points == 15 and used.held_points == 5


def test_a_factor_that_holds_out_every_run_is_refused():
    with pytest.raises(ValueError, match=r"all 4 runs are within 10x of the largest, so none "
                                         r"would be left to fit. Fix: a holdout_factor closer "
                                         r"to 1, or holdout_factor=0"):
        laws.compute(learning_curves([6.52, 6.09, 5.95, 5.80]),
                     options=laws.FitOptions(bootstrap=5, holdout_factor=10))


def _write_csv(table, path):
    """`table` as the CSV scaling.fit --table reads; returns `path`."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(table.names)
        writer.writerows(zip(*(table[name] for name in table.names)))
    return path


def test_the_cli_refuses_two_runs_to_fit_in_flag_words(tmp_path, capsys):
    path = _write_csv(learning_curves([6.52, 6.09, 5.95, 5.80]), tmp_path / "curves.csv")
    assert cli.main([f"--table={path}", "--law=compute", "--n_col=params_non_embedding",
                     f"--report_dir={tmp_path / 'out'}", "--bootstrap=5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: compute law: 2 runs (d64_l2, d96_l3) left to fit")
    assert "--holdout_factor=0, none" in err and "by --holdout_factor=2" in err
    assert not (tmp_path / "out").exists()


def test_a_good_fit_over_eight_sizes_warns_of_nothing_and_says_what_it_used():
    fitted = laws.compute(final_losses(1.8), options=laws.FitOptions(bootstrap=50))
    assert fitted.warnings == []
    [used] = fitted.usage
    assert used.summary() == ("compute law: fitted 7 runs (r0, r1, r2, r3, r4, r5, r6), 7 "
                              "points; held out 1 run (r7), 1 point, by holdout_factor=2 (runs "
                              "within 2x of the largest compute)")
    record = laws.record(fitted)
    assert record["warnings"] == [] and record["usage"][0]["held_out"] == ["r7"]


def test_a_loss_without_a_floor_puts_e_on_its_bound():
    fitted = laws.compute(final_losses(0.0, noise=0.0), options=laws.FitOptions(bootstrap=30))
    [line] = fitted.warnings
    assert line.startswith("degenerate fit: E = ")
    assert "on the optimizer's bound E >= 0" in line
    assert fitted.fit.params["E"].value < guardrails.BOUND_TOLERANCE


def test_a_frontier_of_one_run_and_a_held_out_run_off_it_warn(tmp_path):
    """Larger models undertrained (their losses above the smallest's at every compute): the
    frontier is one run's curve, so every resample is that run and each interval has zero
    width, and the held-out run is off the frontier, so nothing is predicted."""
    table = learning_curves([6.0, 6.3, 6.4, 6.5])
    fitted = laws.compute(table, options=laws.FitOptions(bootstrap=20, holdout_factor=1.5))
    assert [line.split(" = ")[0] for line in fitted.warnings[:3]] == [
        "degenerate fit: E", "degenerate fit: A", "degenerate fit: alpha"]
    assert all("alone in an interval of zero width" in line for line in fitted.warnings[:3])
    assert fitted.warnings[3].startswith("held-out validation predicted nothing (the compute "
                                         "law predicts the held-out points on the compute "
                                         "frontier of all runs; held out: 1 run (d192_l4))")
    assert fitted.notes[-1].endswith("lie on the compute frontier, from 1 run (d64_l2).")
    paths = laws.write(fitted, str(tmp_path), {"source": "synthetic"})
    markdown = (tmp_path / "report.md").read_text()
    assert [line for line in markdown.splitlines() if line.startswith("warning: ")] == [
        f"warning: {w}" for w in fitted.warnings]
    assert "## Runs used\n\n- compute law: fitted 3 runs (d64_l2, d96_l3, d128_l4)" in markdown
    record = json.loads((tmp_path / "fit.json").read_text())
    assert record["warnings"] == fitted.warnings == laws.record(fitted)["warnings"]
    assert record["usage"][0]["fitted_points"] == 15 and str(tmp_path / "fit.json") in paths


def test_the_cli_prints_the_usage_and_warnings_on_stderr(tmp_path, capsys):
    path = _write_csv(final_losses(0.0, noise=0.0), tmp_path / "runs.csv")
    assert cli.main([f"--table={path}", "--law=compute", "--n_col=params_non_embedding",
                     f"--report_dir={tmp_path / 'out'}", "--bootstrap=30"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0].startswith("compute law: fitted 7 runs") and "--holdout_factor=2" in lines[0]
    assert lines[1].startswith("warning: degenerate fit: E = ")
    assert captured.out.splitlines()[0] == str(tmp_path / "out" / "fit.json")


def test_a_held_out_table_that_pairs_nothing_leaves_loss_to_loss_unvalidated():
    """The held-out starcoder run's D moved, so no held-out pair shares (N, D)."""
    sweep = read_csv(str(FIXTURES / "loss_to_loss_sweep.csv"))
    big = read_csv(str(FIXTURES / "loss_to_loss_extrapolation.csv"))
    tokens = big.numeric("tokens") * np.where(big["data"] == "starcoder", 2.0, 1.0)
    fitted = laws.loss_to_loss(
        sweep, "fineweb-edu-100b", "starcoder", columns=laws.Columns(n="params", c="iso_flop"),
        options=laws.FitOptions(bootstrap=10, heldout=big.with_column("tokens", tokens)))
    assert fitted.heldout == []
    assert fitted.warnings[-1].startswith("held-out validation predicted nothing (loss-to-loss "
                                          "predicts the held-out x and y runs of equal N and D")
    assert [u.fit for u in fitted.usage] == ["offset law of val_loss (fineweb-edu-100b)",
                                             "offset law of val_loss (starcoder)"]
    assert all(u.hold_out == "the held-out table" and len(u.held) == 1 for u in fitted.usage)


def test_the_bootstrap_progress_bar_names_the_fit(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    laws.compute(final_losses(1.8), options=laws.FitOptions(bootstrap=20))
    assert "bootstrap compute law" in capsys.readouterr().err
