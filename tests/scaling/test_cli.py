"""python -m scaling.fit on CSV tables: the published data sets in tests/fixtures and a synthetic
batch-size sweep; the report files; clear errors for bad flags and data."""
import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from scaling import fit as cli
from scaling.table import read_csv
from tests import FIXTURES, REPO

DATA = FIXTURES
CHINCHILLA = [f"--table={DATA / 'chinchilla_approach3.csv'}", "--law=chinchilla",
              "--n-col=Model Size", "--c-col=Training FLOP", "--loss-col=loss",
              "--drop-highest-loss=5"]
SWEEP = [f"--table={DATA / 'loss_to_loss_sweep.csv'}", "--c-col=iso_flop"]


def read(out):
    return json.loads((out / "fit.json").read_text()), (out / "report.md").read_text()


@pytest.mark.slow
def test_chinchilla_table_through_the_module_entry_point(tmp_path):
    out = tmp_path / "chinchilla"
    done = subprocess.run([sys.executable, "-m", "scaling.fit", *CHINCHILLA, f"--out={out}",
                           "--grid-starts=50", "--bootstrap=20", "--holdout-factor=0"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    record, markdown = read(out)
    assert record["parameters"]["A"]["value"] == pytest.approx(477.8, rel=0.01)
    assert record["parameters"]["B"]["value"] == pytest.approx(2143, rel=0.01)
    assert record["inputs"]["rows"] == 240 and record["heldout"] == []
    assert "Dropped the 5 highest-loss rows." in record["notes"]
    assert "| alpha | 0.3473 |" in markdown and "![chinchilla.png](chinchilla.png)" in markdown
    assert (out / "chinchilla.png").read_bytes()[:4] == b"\x89PNG"


def test_chinchilla_holds_out_the_largest_run_by_default(tmp_path):
    out = tmp_path / "chinchilla"
    cli.run([*CHINCHILLA, f"--out={out}", "--grid-starts=50", "--bootstrap=20"])
    record, markdown = read(out)
    [held] = record["heldout"]
    assert held["x"] == pytest.approx(1.2956e22, rel=1e-3) and held["actual"] == \
        pytest.approx(2.0774, abs=1e-4)
    assert abs(held["relative_error"]) < 0.05
    assert "Mean |relative error|" in markdown
    assert record["warnings"] == []  # a fit the 239 runs pin down: no guardrail fires
    [used] = record["usage"]
    assert (used["fitted_runs"], used["held_out"]) == (239, ["N=6.8e+09 D=3.18e+11"])
    allocation = record["compute-optimal allocation"]
    assert len(allocation) == 9 and all(v["low"] <= v["value"] <= v["high"]
                                        for v in allocation.values())


def test_loss_to_loss_table_with_heldout_table(tmp_path):
    out = tmp_path / "l2l"
    cli.run([*SWEEP, "--law=loss_to_loss", "--x-data=fineweb-edu-100b", "--y-data=starcoder",
             f"--heldout-table={DATA / 'loss_to_loss_extrapolation.csv'}", f"--out={out}",
             "--bootstrap=10"])
    record, _ = read(out)
    shift = record["shifted power law"]
    assert shift["E_x"]["value"] == pytest.approx(1.967, abs=0.002)
    assert shift["E_y"]["value"] == pytest.approx(0.845, abs=0.002)
    [held] = record["heldout"]
    assert held["label"] == "N=3.31e+09, D=5.04e+10"
    assert held["actual"] == pytest.approx(0.9477, abs=1e-4)
    assert abs(held["relative_error"]) < 0.03
    assert record["warnings"] == []
    assert (out / "loss_to_loss.png").stat().st_size > 10_000


def test_loss_to_loss_train_to_test_holds_out_the_largest_budget(tmp_path):
    out = tmp_path / "l2l"
    cli.run([*SWEEP, "--law=loss_to_loss", "--kind=train_to_test", "--x-data=starcoder",
             "--y-loss=eval/c4_val/CrossEntropyLoss", f"--out={out}", "--bootstrap=10"])
    record, _ = read(out)
    sweep = read_csv(str(DATA / "loss_to_loss_sweep.csv"))
    top = (sweep["data"] == "starcoder") & (sweep.numeric("iso_flop") == 4.84e19)
    assert len(record["heldout"]) == top.sum() == 11  # the runs at the largest budget
    assert {h["actual"] for h in record["heldout"]} == set(
        sweep.numeric("eval/c4_val/CrossEntropyLoss")[top])
    assert record["heldout_summary"]["mean_abs_relative_error"] < 0.02


def test_loss_to_loss_test_to_test_on_c4(tmp_path):
    """fineweb-100b and smollm-corpus models paired by size, both evaluated on C4; the 3.3B
    pair is predicted."""
    out = tmp_path / "l2l"
    cli.run([*SWEEP, "--law=loss_to_loss", "--kind=test_to_test", "--x-data=fineweb-100b",
             "--y-data=smollm-corpus", "--x-loss=eval/c4_val/CrossEntropyLoss",
             "--y-loss=eval/c4_val/CrossEntropyLoss",
             f"--heldout-table={DATA / 'loss_to_loss_extrapolation.csv'}", f"--out={out}",
             "--bootstrap=10"])
    record, _ = read(out)
    [held] = record["heldout"]
    big = read_csv(str(DATA / "loss_to_loss_extrapolation.csv"))
    assert held["actual"] == big.numeric("eval/c4_val/CrossEntropyLoss")[
        big["data"] == "smollm-corpus"][0]
    assert abs(held["relative_error"]) < 0.03
    assert "pairs" in record["notes"][-1]


def test_approach2_on_the_isoflop_sweep(tmp_path):
    out = tmp_path / "a2"
    cli.run([*SWEEP, "--law=chinchilla", "--approach=2", "--where", "data=fineweb-edu-100b",
             "--budget-col=iso_flop", f"--out={out}", "--bootstrap=50"])
    record, _ = read(out)
    exponents = record["allocation"]
    assert exponents["a"]["low"] < exponents["a"]["value"] < exponents["a"]["high"]
    assert 0.3 < exponents["a"]["value"] < 0.7 and 0.3 < exponents["b"]["value"] < 0.7
    assert record["warnings"] == []
    n_check = next(h for h in record["heldout"] if h["label"].startswith("N_opt"))
    assert abs(n_check["relative_error"]) < 0.5
    assert (out / "chinchilla_approach2.png").exists()


def test_critical_batch_from_a_table(tmp_path):
    path = tmp_path / "sweep.csv"
    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["params", "batch_size", "steps_to_target"])
        for n in (1e6, 4e6, 1.6e7, 6.4e7):
            for batch in 2.0 ** np.arange(8, 15):
                steps = 1000 * (1 + 2048 * (n / 1e6)**0.4 / batch) * np.exp(rng.normal(0, 0.02))
                writer.writerow([n, batch, steps])
    out = tmp_path / "cbs"
    cli.run([f"--table={path}", "--law=cbs", f"--out={out}", "--bootstrap=100"])
    record, markdown = read(out)
    law = record["power laws (B* = N_coef N^N_exponent = D_coef D*^D_exponent)"]
    assert law["N_exponent"]["value"] == pytest.approx(0.4, abs=0.1)
    assert record["heldout"][0]["label"] == "CBS at N=6.4e+07"
    assert "B* at N=1.6e+07" in markdown
    assert record["warnings"] == []
    assert sorted(record["usage"][0]["held_out"]) == sorted(
        f"N=6.4e+07 B={b:.3g}" for b in 2.0 ** np.arange(8, 15))


@pytest.mark.parametrize("flags, message", [
    (["--law=chinchilla", "--loss-col=loss_typo"], "no column 'loss_typo'; the table has"),
    (["--law=loss_to_loss"], "needs --x_data"),
    (["--law=loss_to_loss", "--x-data=starcoder", "--kind=train_to_test",
      "--y-data=smollm-corpus"], "--y_data must equal --x_data"),
    (["--law=loss_to_loss", "--x-data=code", "--y-data=starcoder"], "no rows with data='code'"),
    (["--law=compute", "--where", "data=nothing"], "no rows left after --where"),
    (["--law=compute", "--holdout-factor=1"], "holdout factor 1.0 must exceed 1"),
    (["--law=compute", "--level=95"], "level=95.0: the interval level must be in (0, 1)"),
    (["--law=compute", "--where", "iso_flop=big"], "iso_flop is numeric; give a number"),
])
def test_bad_flags_get_a_clear_error(tmp_path, capsys, flags, message):
    assert cli.main([*SWEEP, *flags, f"--out={tmp_path}", "--bootstrap=2"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("damage, problem", [
    (lambda text: text[:text.rindex(",")], r"line 16 has \d+ cells, the header \d+"),  # torn
    (lambda text: text.replace("4", "\udcff", 1), "UnicodeDecodeError"),          # bad bytes
])
def test_a_damaged_table_is_one_error_line_naming_it(tmp_path, capsys, damage, problem):
    path = tmp_path / "results.csv"
    text = (DATA / "loss_to_loss_sweep.csv").read_text().splitlines(keepends=True)[:16]
    path.write_bytes(damage("".join(text)).encode("utf-8", "surrogateescape"))
    assert cli.main([f"--table={path}", "--law=compute", "--c-col=iso_flop",
                     f"--out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert re.match(rf"error: {path} is damaged \({problem}.*\); restore it from a copy", err)
    assert err.count("\n") == 1
