"""scaling/runs.py and the CLI on run directories: lm.train workdirs (config.json, model.json,
metrics.jsonl) written here for synthetic ladders whose losses follow known laws."""
import json
import os
import warnings

import numpy as np
import pytest

from scaling import fit as cli
from scaling.runs import load_runs
from tests import FIXTURES

REAL_RUNS = FIXTURES / "runs"  # two lm.train runs (tests/fixtures/README.md)

TRUE = dict(E=2.0, A=60.0, alpha=0.3, B=80.0, beta=0.3)  # L(N, D) of the synthetic ladder


def ladder_loss(n, tokens):
    return TRUE["E"] + TRUE["A"] / n**TRUE["alpha"] + TRUE["B"] / tokens**TRUE["beta"]


def write_run(root, name, *, n, steps, batch_size, loss_at, seq_len=128, log_every=20,
              eval_every=100, corpus="en_docs", eval_sets=("en_docs", "code_py"), stop_at=None,
              torn=False, noise=0.0, seed=0):
    """A run directory as lm.train writes it; loss_at(step) gives the noiseless loss."""
    path = os.path.join(root, name)
    os.makedirs(path)
    config = {"model": {"d_model": 64, "n_layers": 2},
              "data": {"corpus": corpus, "eval_corpora": list(eval_sets), "seq_len": seq_len},
              "optimizer": {"name": "adamw", "lr": 3e-3},
              "schedule": {"name": "constant"},
              "train": {"steps": steps, "batch_size": batch_size, "eval_every": eval_every,
                        "log_every": log_every}}
    embedding = 4096 * 64
    model = {"params/total": n + embedding, "params/embedding": embedding,
             "params/non_embedding": n, "flops_per_token": 6 * n, "seq_len": seq_len}
    rng = np.random.default_rng(seed)
    lines = []
    for step in range(log_every, (stop_at or steps) + 1, log_every):
        tokens = step * batch_size * seq_len
        row = {"step": step, "tokens": tokens, "flops": 6 * n * tokens,
               "train/loss": loss_at(step) * np.exp(rng.normal(0, noise)), "train/lr": 3e-3}
        if step % eval_every == 0 or step == steps:
            for k, name_ in enumerate(eval_sets):
                row[f"eval/{name_}/loss"] = loss_at(step) * np.exp(rng.normal(0, noise)) + k
                row[f"eval/{name_}/bpb"] = row[f"eval/{name_}/loss"] / np.log(2)
        lines.append(json.dumps(row))
    text = "\n".join(lines) + "\n"
    if torn:
        text += '{"step": 99999, "tokens": 1'
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(path, "model.json"), "w") as f:
        json.dump(model, f)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.write(text)
    return path


def write_ladder(root, sizes=(2e5, 4e5, 8e5, 1.6e6, 3.2e6), ratios=(5, 20, 80), noise=0.005):
    """Runs at every (N, D = ratio N): final losses on the Chinchilla law TRUE."""
    batch, seq = 16, 128
    for i, n in enumerate(sizes):
        for j, ratio in enumerate(ratios):
            steps = int(ratio * n / (batch * seq)) // 20 * 20
            write_run(root, f"n{i}_d{j}", n=int(n), steps=steps, batch_size=batch,
                      seq_len=seq, log_every=20, eval_every=steps, noise=noise, seed=10 * i + j,
                      loss_at=lambda s, n=n: ladder_loss(n, s * batch * seq))
    return root


def test_runs_table_columns_and_finished_flags(tmp_path):
    loss = lambda s: 5.0 - s / 1000  # noqa: E731
    write_run(tmp_path, "done", n=1000, steps=200, batch_size=4, loss_at=loss)
    write_run(tmp_path, "crashed", n=2000, steps=200, batch_size=4, loss_at=loss, stop_at=140)
    with pytest.warns(UserWarning, match="last line is incomplete"):
        write_run(tmp_path, "torn", n=3000, steps=100, batch_size=8, loss_at=loss, torn=True,
                  eval_sets=("en_docs", "en_lit"), corpus="en_lit")
        table = load_runs([str(tmp_path)])
    assert table["name"].tolist() == ["crashed", "done", "torn"]
    assert table["finished"].tolist() == [False, True, True]
    np.testing.assert_array_equal(table.numeric("params_non_embedding"), [2000, 1000, 3000])
    np.testing.assert_array_equal(table.numeric("tokens"), [140 * 512, 200 * 512, 100 * 1024])
    np.testing.assert_array_equal(table.numeric("flops"),
                                  6 * table.numeric("params_non_embedding") *
                                  table.numeric("tokens"))
    assert table["data"].tolist() == ["en_docs", "en_docs", "en_lit"]
    np.testing.assert_allclose(table.numeric("val_loss"), [np.nan, 4.8, 4.9 + 1])
    np.testing.assert_allclose(table.numeric("eval/code_py/loss"), [np.nan, 5.8, np.nan])
    np.testing.assert_allclose(table.numeric("eval/en_lit/loss"), [np.nan, np.nan, 5.9])
    steps, train = table["history"][0].curve("train/loss")
    np.testing.assert_array_equal(steps, np.arange(20, 141, 20))
    np.testing.assert_allclose(train, 5 - steps / 1000)
    with pytest.raises(ValueError, match="no 'eval/c4/loss'.*train/loss"):
        table["history"][0].curve("eval/c4/loss")


def test_real_trainer_runs_load_with_their_logged_numbers():
    table = load_runs([str(REAL_RUNS)])
    assert table["name"].tolist() == ["byte_v3", "quickstart"]
    assert table["finished"].tolist() == [True, True]
    np.testing.assert_array_equal(table.numeric("params_non_embedding"), [787584, 787584])
    np.testing.assert_array_equal(table.numeric("params_total"), [820480, 1311872])
    np.testing.assert_array_equal(table.numeric("batch_tokens"), [16 * 256, 16 * 128])
    np.testing.assert_array_equal(table.numeric("tokens"), [1638400, 1638400])
    np.testing.assert_array_equal(table.numeric("flops"), [9342812160000, 13529146982400])
    np.testing.assert_allclose(table.numeric("val_loss"), [1.9081831127405167,
                                                           4.625442981719971])
    np.testing.assert_allclose(table.numeric("eval/code_py/loss"), [2.167335495352745,
                                                                    5.388788223266602])
    assert table["optimizer"].tolist() == ["adamw", "adamw"]
    steps, loss = table["history"][1].curve("eval/en_docs/loss")
    np.testing.assert_array_equal(steps, [200, 400, 600, 800])
    assert loss[-1] == table.numeric("val_loss")[1]


def test_curve_points_are_every_validation_point_with_its_compute():
    from scaling.runs import curve_points
    table = load_runs([str(REAL_RUNS / "quickstart")])
    points = curve_points(table)
    assert points["name"].tolist() == [f"quickstart@{s}" for s in (200, 400, 600, 800)]
    np.testing.assert_array_equal(points.numeric("flops"),
                                  13529146982400 * np.array([1, 2, 3, 4]) / 4)
    np.testing.assert_array_equal(points.numeric("val_loss"),
                                  table["history"][0].curve("eval/en_docs/loss")[1])
    np.testing.assert_array_equal(points.numeric("eval/code_py/loss"),
                                  table["history"][0].curve("eval/code_py/loss")[1])


def test_cli_refuses_to_fit_two_real_runs(tmp_path, capsys):
    """The repository's two real runs are not a ladder: a clear error, no report."""
    assert cli.main([f"--runs={REAL_RUNS / 'quickstart'}", str(REAL_RUNS / "byte_v3"),
                     "--law=compute", f"--out={tmp_path}"]) == 2
    assert "compute: 2 run(s) for a law with 3 parameters" in capsys.readouterr().err
    assert not (tmp_path / "fit.json").exists()


def test_missing_files_and_empty_directories_are_named(tmp_path):
    write_run(tmp_path, "run", n=1000, steps=20, batch_size=4, loss_at=lambda s: 3.0)
    os.remove(tmp_path / "run" / "model.json")
    with pytest.raises(ValueError, match="missing model.json"):
        load_runs([str(tmp_path / "run")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a run directory"):
        load_runs([str(tmp_path / "empty")])


def test_cli_compute_law_on_a_ladder_of_run_directories(tmp_path):
    runs = write_ladder(tmp_path / "ladder")
    out = tmp_path / "report"
    paths = cli.run([f"--runs={runs}", "--law=compute", f"--out={out}", "--bootstrap=100"])
    assert sorted(os.path.basename(p) for p in paths) == ["compute_law.png", "fit.json",
                                                          "report.md"]
    record = json.loads((out / "fit.json").read_text())
    params = record["parameters"]
    assert set(params) == {"E", "A", "alpha"}
    assert all(p["low"] <= p["value"] <= p["high"] for p in params.values())
    [held] = record["heldout"]  # the one run within 2x of the largest compute
    assert held["x"] == pytest.approx(6 * 3.2e6 * 80 * 3.2e6, rel=0.01)
    assert abs(held["relative_error"]) < 0.05
    assert "Held-out validation" in (out / "report.md").read_text()
    assert record["warnings"] == []


def test_cli_chinchilla_on_run_directories_recovers_the_ladder_law(tmp_path):
    runs = write_ladder(tmp_path / "ladder", noise=0.002)
    out = tmp_path / "report"
    cli.run(["--runs", str(runs), "--law=chinchilla", f"--out={out}", "--bootstrap=30",
             "--grid-starts=60", "--loss-col=eval/en_docs/loss"])
    record = json.loads((out / "fit.json").read_text())
    for name, truth in TRUE.items():  # 14 noisy runs pin E, A, B loosely: intervals must cover
        estimate = record["parameters"][name]
        assert estimate["low"] <= truth <= estimate["high"], name
    assert record["parameters"]["E"]["value"] == pytest.approx(TRUE["E"], rel=0.1)
    assert abs(record["heldout_summary"]["mean_abs_relative_error"]) < 0.02
    assert (out / "chinchilla.png").stat().st_size > 10_000
    assert record["warnings"] == []


def test_cli_skips_unfinished_runs_and_refuses_too_few(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "a", n=1000, steps=200, batch_size=4, loss_at=lambda s: 5 - s / 1000)
    write_run(runs, "b", n=2000, steps=200, batch_size=4, loss_at=lambda s: 5 - s / 900)
    write_run(runs, "c", n=4000, steps=200, batch_size=4, loss_at=lambda s: 5, stop_at=60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main([f"--runs={runs / 'a'}", str(runs / "b"), str(runs / "c"),
                         "--law=compute", f"--out={tmp_path / 'out'}"]) == 2
    assert "compute: 2 run(s) for a law with 3 parameters" in capsys.readouterr().err
    assert any("skipping 1 unfinished run(s) without final eval losses: c" in str(w.message)
               for w in caught)


def _cbs_loss(n, batch_tokens):
    """Loss after `step` steps: progress step / (1 + B_noise / B) (McCandlish et al. 2018), so
    S(B) = a + b/B with b/a = B_noise = 1024 (N / 1e5)^0.5 and B* = 0.2 B_noise."""
    noise_scale = 1024 * (n / 1e5)**0.5
    return lambda step: 2.0 + 30 / n**0.2 + 3.0 / (step / (1 + noise_scale / batch_tokens))**0.4


@pytest.mark.filterwarnings("ignore:.*bootstrap resamples could not be fitted")
def test_cli_critical_batch_from_loss_curves(tmp_path):
    """Six batch sizes per size: some resamples draw fewer than 3 distinct ones and are lost."""
    runs = tmp_path / "runs"
    seq = 64
    rng = np.random.default_rng(0)
    for i, n in enumerate([1e5, 4e5, 1.6e6, 6.4e6]):
        for batch in (4, 8, 16, 32, 64, 128):
            noise_scale = 1024 * (n / 1e5)**0.5
            steps = int(1200 * (1 + noise_scale / (batch * seq)) * rng.uniform(1.1, 1.5))
            write_run(runs, f"n{i}_b{batch}", n=int(n), steps=steps // 10 * 10,
                      batch_size=batch, seq_len=seq, log_every=10, eval_every=10**9,
                      noise=0.001, seed=i * 100 + batch, loss_at=_cbs_loss(n, batch * seq))
    out = tmp_path / "cbs"
    cli.run([f"--runs={runs}", "--law=cbs", f"--out={out}", "--bootstrap=200"])
    record = json.loads((out / "fit.json").read_text())
    law = record["power laws (B* = N_coef N^N_exponent = D_coef D*^D_exponent)"]
    assert law["N_exponent"]["value"] == pytest.approx(0.5, abs=0.1)
    per_size = record["per model size"]
    assert per_size["B* at N=1e+05"]["value"] == pytest.approx(0.2 * 1024, rel=0.25)
    [held] = record["heldout"]
    assert held["x"] == 6.4e6 and held["actual"] == pytest.approx(0.2 * 1024 * 8, rel=0.25)
    assert abs(held["relative_error"]) < 0.3
    # B* ~ 0.2 x 1024 tokens at N = 1e5 lies below its smallest batch, 4 x 64 = 256 tokens
    [warning] = record["warnings"]
    assert warning.startswith("B* at N=1e+05 = ") and " lies below the smallest batch " \
        "measured (256 to 8192): an extrapolation" in warning
    assert sorted(record["usage"][0]["held_out"]) == sorted(
        f"n3_b{b}" for b in (4, 8, 16, 32, 64, 128))


def test_runs_with_one_directory_name_in_different_folders_stay_apart(tmp_path):
    """A study's tune/d32_l2/X and tune/d48_l2/X: fits resample and hold out runs by name, so
    the two must not merge into one run."""
    for folder, n in (("d32_l2", 2e5), ("d48_l2", 4e5)):
        write_run(tmp_path / "tune" / folder, "optimizer=adamw,lr=0.01", n=n, steps=100,
                  batch_size=32, loss_at=lambda step, n=n: ladder_loss(n, 4096 * step))
    write_run(tmp_path, "other", n=8e5, steps=100, batch_size=32,
              loss_at=lambda step: ladder_loss(8e5, 4096 * step))
    table = load_runs([str(tmp_path / "tune" / "d32_l2"), str(tmp_path / "tune" / "d48_l2"),
                       str(tmp_path)])
    assert sorted(table["name"]) == ["d32_l2/optimizer=adamw,lr=0.01",
                                     "d48_l2/optimizer=adamw,lr=0.01", "other"]


@pytest.mark.parametrize("name, damage, problem", [
    ("config.json", lambda text: text[:len(text) // 2], "JSONDecodeError"),  # torn mid-write
    ("model.json", lambda text: "[]", "a JSON list, not an object"),          # edited
    ("metrics.jsonl", lambda text: "{oops}\n" + text, "line 1 is not a JSON object"),
])
def test_a_damaged_run_file_is_one_error_line_naming_it(tmp_path, capsys, name, damage,
                                                        problem):
    run = write_run(tmp_path, "run", n=1000, steps=20, batch_size=4, loss_at=lambda s: 3.0)
    path = os.path.join(run, name)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(damage(text))
    assert cli.main([f"--runs={run}", "--law=compute", f"--out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} is damaged ({problem}") and err.count("\n") == 1, err


def test_a_run_being_written_is_read_up_to_its_last_complete_row(tmp_path):
    """A row being appended is not read, and a run that has not completed one is left out."""
    write_run(tmp_path, "a", n=1000, steps=200, batch_size=4, loss_at=lambda s: 3.0, torn=True)
    starting = write_run(tmp_path, "b", n=2000, steps=200, batch_size=4, loss_at=lambda s: 3.0)
    with open(os.path.join(starting, "metrics.jsonl"), "w") as f:
        f.write('{"step": 20, "tokens": 10')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = load_runs([str(tmp_path)])
    assert list(table["name"]) == ["a"] and table["last_step"][0] == 200
    assert any(f"{starting}: no complete row in metrics.jsonl yet" in str(w.message)
               for w in caught)
