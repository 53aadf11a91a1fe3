"""Sweeps (lm/sweep*.py): tiny sweeps end to end, skip and resume, failure isolation, dry run,
bad input, run names, best-lr selection, and a sweep through a local Ray instance."""
import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from lm import train
from lm.errors import SweepError
from lm.sweep import cli as sweep_cli
from lm.sweep import runner
from lm.sweep.executors import LocalProcesses
from lm.sweep.results import best_learning_rates, summary
from lm.sweep.spec import Sweep, expand, format_value, lr_grid, product, zip_axes
from lm.train import runtime
from tests import REPO

TINY = os.path.join(REPO, "configs", "sweeps", "tiny.py")


def tiny_sweep(data_root, points=None) -> Sweep:
    """configs/sweeps/tiny.py with its data under the test session's root (and other points)."""
    loaded = runner.load_sweep(TINY)
    loaded.base.data.root = data_root
    return Sweep(loaded.base, loaded.points if points is None else points)


def run(swp, root, **kwargs) -> int:
    return runner.run_sweep(swp, str(root), name="tiny", config_path=TINY, **kwargs)


def read_csv(path) -> dict:
    with open(path) as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def listed(out: str, name: str, todo: str) -> bool:
    """Whether the --dry-run table `out` has run `name` with `todo` in its "to do" column."""
    return re.search(rf"^{re.escape(name)} +{re.escape(todo)} ", out, re.MULTILINE) is not None


def forbid_training(monkeypatch):
    def fail(config, workdir):
        raise AssertionError(f"trained {workdir}")
    monkeypatch.setattr(train, "run", fail)


@pytest.fixture(scope="module")
def finished_root(tmp_path_factory, data_root):
    """The tiny sweep (AdamW at 3 learning rates), run once for the module: do not modify."""
    root = tmp_path_factory.mktemp("tiny") / "root"
    assert run(tiny_sweep(data_root), root) == 0
    return root


@pytest.fixture
def copied_root(finished_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(finished_root, root)
    return root


@pytest.mark.slow
def test_tiny_sweep_trains_each_run_in_its_workdir_and_writes_the_tables(finished_root):
    rows = read_csv(finished_root / "results.csv")
    assert list(rows) == ["lr=0.01", "lr=0.03", "lr=0.1"]
    for name, row in rows.items():
        assert (row["status"], row["action"], row["optimizer"]) == ("finished", "trained", "adamw")
        assert (row["steps"], row["step"], row["tokens"]) == ("16", "16", str(16 * 8 * 32))
        assert int(row["params_total"]) > int(row["params_non_embedding"]) > 0
        assert float(row["val_loss"]) == float(row["eval/en_docs_sample/loss"])
        assert float(row["eval/code_py_sample/loss"]) > 0 and float(row["wall_s"]) > 0
        with open(finished_root / name / "metrics.jsonl") as f:
            assert json.loads(f.readlines()[-1])["step"] == 16
    with open(finished_root / "sweep.json") as f:
        manifest = json.load(f)
    assert manifest["sweep"] == "tiny"
    assert [r["overrides"]["lr"] for r in manifest["runs"]] == [1e-2, 3e-2, 1e-1]

    with open(finished_root / "best_lr.csv") as f:
        best = list(csv.DictReader(f))
    assert len(best) == 1
    winner = min(rows.values(), key=lambda r: float(r["val_loss"]))
    assert (best[0]["run"], float(best[0]["best_lr"])) == (winner["name"], float(winner["lr"]))
    assert best[0]["finished"] == "3/3" and best[0]["grid"] == "0.01 0.03 0.1"


@pytest.mark.slow
def test_a_rerun_skips_finished_runs_without_training(copied_root, data_root, monkeypatch,
                                                      capsys):
    forbid_training(monkeypatch)
    before = read_csv(copied_root / "results.csv")
    assert run(tiny_sweep(data_root), copied_root) == 0
    after = read_csv(copied_root / "results.csv")
    assert [r["action"] for r in after.values()] == ["skipped"] * 3
    assert all(after[n]["val_loss"] == before[n]["val_loss"] for n in before)
    assert "3 finished" in capsys.readouterr().out


def sigterm_at_step(monkeypatch, step: int) -> None:
    """Sends this process SIGTERM once, while step `step` of the first run it trains is
    computed (in-process runs: lm.train's loop takes the signal)."""
    real_build = runtime.build
    fired = []

    def build(*args, **kwargs):
        rt = real_build(*args, **kwargs)

        def train_step(state, windows):
            out = rt.train_step(state, windows)
            if int(out[0].step) == step and not fired:
                fired.append(True)
                signal.raise_signal(signal.SIGTERM)
            return out
        return rt._replace(train_step=train_step)

    monkeypatch.setattr(runtime, "build", build)


@pytest.mark.slow
def test_a_stopped_sweep_resumes_its_interrupted_run(finished_root, data_root, tmp_path,
                                                     monkeypatch, capsys):
    """SIGTERM while the first run trains: it saves a checkpoint, the second never starts;
    the rerun resumes the first (to the same losses as an uninterrupted run) and trains the
    second."""
    sigterm_at_step(monkeypatch, 10)
    swp = tiny_sweep(data_root, lr_grid({"adamw": [1e-2, 3e-2]}))
    root = tmp_path / "root"
    assert run(swp, root) == 0
    rows = read_csv(root / "results.csv")
    # the last logged step is 8 (log_every=4); the checkpoint is at the stop, step 10
    assert [(r["status"], r["step"]) for r in rows.values()] == [("stopped", "8"),
                                                                  ("pending", "0")]
    assert rows["lr=0.01"]["error"].startswith("stopped by SIGTERM")
    assert not os.path.exists(root / "lr=0.03")

    capsys.readouterr()
    assert run(swp, root) == 0
    assert "resumed from the checkpoint at step 10" in capsys.readouterr().out
    rows = read_csv(root / "results.csv")
    assert [(r["status"], r["action"]) for r in rows.values()] == [("finished", "resumed"),
                                                                    ("finished", "trained")]
    uninterrupted = read_csv(finished_root / "results.csv")
    for name in rows:
        assert rows[name]["val_loss"] == uninterrupted[name]["val_loss"]


@pytest.mark.slow
def test_failures_are_recorded_and_the_sweep_goes_on(data_root, tmp_path, capsys):
    """Two processes: one run finishes, one diverges (huge lr, no clipping), one crashes at
    run time (a vocabulary smaller than the tokenizer's)."""
    swp = tiny_sweep(data_root, zip_axes(lr=[3e-3, 1e30, 3e-3],
                                         **{"model.vocab_size": [0, 0, 10],
                                            "optimizer.grad_clip": [1.0, 0.0, 1.0]}))
    root = tmp_path / "root"
    assert run(swp, root, executor=LocalProcesses(2)) == 1  # a failed run: exit status 1
    rows = read_csv(root / "results.csv")
    good, diverged, failed = rows.values()
    assert good["status"] == "finished" and float(good["val_loss"]) > 0
    assert diverged["status"] == "diverged" and "not finite" in diverged["error"]
    assert failed["status"] == "failed" and failed["error"].startswith("ConfigError: model.vocab")
    with open(root / failed["name"] / "sweep_run.json") as f:
        assert "Traceback" in json.load(f)["traceback"]
    assert "model: " in (root / good["name"] / "train.log").read_text()
    out = capsys.readouterr().out
    assert f"diverged  {diverged['name']}" in out and f"failed    {failed['name']}" in out

    assert run(swp, root, dry_run=True) == 0  # next time: failed runs retry, diverged do not
    out = capsys.readouterr().out
    assert listed(out, diverged["name"], "skip (diverged)")
    assert listed(out, failed["name"], "train") and listed(out, good["name"], "skip (finished)")


@pytest.mark.slow
def test_dry_run_lists_runs_with_flops_and_time_and_writes_nothing(finished_root, data_root,
                                                                   tmp_path, capsys):
    root = tmp_path / "root"
    assert run(tiny_sweep(data_root), root, dry_run=True) == 0
    out = capsys.readouterr().out
    assert "sweep tiny: 3 runs" in out and "3 to train, 0 to resume, 0 to skip" in out
    with open(finished_root / "lr=0.01" / "model.json") as f:  # what training recorded
        tokens, flops_per_token = 16 * 8 * 32, json.load(f)["flops_per_token"]
    for name in ("lr=0.01", "lr=0.03", "lr=0.1"):
        assert listed(out, name, "train")
    assert f"{tokens * flops_per_token:.2e}" in out
    assert f"total: {3 * tokens * flops_per_token:.2e} training FLOPs to go" in out
    assert not root.exists()


def test_optimizers_sweep_expands_to_a_tuned_grid_per_optimizer(tmp_path, capsys):
    swp = runner.load_sweep(os.path.join(REPO, "configs", "sweeps", "optimizers.py"))
    runs = expand(swp)
    assert len(runs) == 9
    assert runs[0].name == "size=d64_l2,optimizer=adamw,lr=0.003"
    assert {r.config.optimizer.name for r in runs} == {"adamw", "soap", "simplified_ademamix"}
    steps = round(5 * 98_624 / (16 * 128))  # 5 tokens per non-embedding parameter
    assert {(r.config.train.steps, r.config.schedule.warmup_steps) for r in runs} == {
        (steps, round(0.1 * steps))}
    assert runner.run_sweep(swp, str(tmp_path / "root"), name="optimizers", config_path="x",
                           dry_run=True) == 0
    assert "9 to train" in capsys.readouterr().out


def test_run_names_are_readable_stable_and_made_of_what_varies(data_root):
    base = tiny_sweep(data_root).base
    runs = expand(Sweep(base, product(lr_grid({"adamw": [1e-3], "lion": [1e-4]}),
                                      size=["d64_l2"], seed=[0, 1])))
    assert [r.name for r in runs] == ["optimizer=adamw,lr=0.001,seed=0",
                                      "optimizer=adamw,lr=0.001,seed=1",
                                      "optimizer=lion,lr=0.0001,seed=0",
                                      "optimizer=lion,lr=0.0001,seed=1"]
    assert runs[2].config.optimizer.name == "lion" and runs[3].config.train.seed == 1
    assert runs[0].config.model.d_model == 64  # the ladder size, though not in the name
    named = expand(Sweep(base, product(size=["d64_l2"], lr=[3e-5, 1e-2]),
                         always_named=("size",)))
    assert [r.name for r in named] == ["size=d64_l2,lr=3e-05", "size=d64_l2,lr=0.01"]
    presets = expand(Sweep(base, product(precision=["bfloat16", "e4m3/e4m3"])))
    assert [r.name for r in presets] == ["precision=bfloat16", "precision=e4m3-e4m3"]
    assert presets[0].config.precision.activation_dtype == "bfloat16"
    assert presets[1].config.precision.mx_weights == "mxfp8_e4m3"
    assert expand(Sweep(base, [{"optimizer.lr": 0.1}]))[0].name == "lr=0.1"
    assert format_value(np.float64(0.01)) == "0.01"  # numpy 2 reprs it as np.float64(0.01)


@pytest.mark.parametrize("points, message", [
    (lambda: product(lr=[1e-3, 1e-3]), "two runs map to the workdir 'lr=0.001'"),
    (lambda: lr_grid({"adamw": [1e-3], "adam": [1e-3]}),
     "optimizer 'adam' is not registered; use one of .*adamw"),
    (lambda: product(lr=[]), "axis 'lr' is empty"),
    (lambda: lr_grid({"adamw": []}), "the lr grid of 'adamw' is empty"),
    (lambda: [], "the sweep's point list is empty"),
    (lambda: zip_axes(lr=[1e-3, 3e-3], seed=[0]), "axes of one length"),
    (lambda: product(**{"optimizer.learning_rate": [1e-3]}),
     "'optimizer.learning_rate' is not a config field"),
    (lambda: product(size=["d100_l3"]), "unknown model size 'd100_l3'"),
    (lambda: product(dataset=["no_such_corpus"]), "unknown corpus or source 'no_such_corpus'"),
    (lambda: product(batch_size=[7], **{"train.microbatches": [2]}),
     "not divisible by train.microbatches"),
])
def test_bad_sweeps_fail_before_any_training(points, message, data_root, tmp_path, monkeypatch):
    forbid_training(monkeypatch)
    with pytest.raises(SweepError, match=message):
        run(tiny_sweep(data_root, points()), tmp_path / "root")
    assert not (tmp_path / "root").exists()


def test_a_root_holding_other_runs_is_refused(data_root, tmp_path, monkeypatch, capsys):
    forbid_training(monkeypatch)
    other = tmp_path / "other"
    other.mkdir()
    (other / "sweep.json").write_text(json.dumps({"sweep": "optimizers", "config": "o.py"}))
    with pytest.raises(SweepError, match="holds the runs of sweep 'optimizers'"):
        run(tiny_sweep(data_root), other)
    loose = tmp_path / "loose"
    (loose / "quickstart").mkdir(parents=True)
    (loose / "quickstart" / "metrics.jsonl").write_text("")
    with pytest.raises(SweepError, match="already holds runs that no sweep started"):
        run(tiny_sweep(data_root), loose)
    assert sweep_cli.main([f"--config={TINY}", f"--root={other}"]) == 2  # the CLI: exit status 2
    assert "holds the runs of sweep 'optimizers'" in capsys.readouterr().err
    assert sweep_cli.main([f"--config={tmp_path / 'none.py'}", f"--root={other}"]) == 2


def test_best_lr_is_the_lowest_validation_loss_of_each_grid():
    def row(size, opt, lr, loss, status="finished"):
        return {"name": f"{size},{opt},{lr}", "status": status, "size": size,
                "optimizer": opt, "lr": lr, **({"val_loss": loss} if loss is not None else {})}

    rows = [row("s", "adamw", 1e-3, 3.0), row("s", "adamw", 3e-3, 2.5),
            row("s", "adamw", 1e-2, 2.7),
            row("s", "soap", 1e-3, 2.4), row("s", "soap", 3e-3, 2.6),
            row("s", "soap", 1e-2, 1.0, "stopped"),       # unfinished: not a candidate
            row("m", "adamw", 1e-3, 2.9), row("m", "adamw", 3e-3, math.nan),
            row("m", "adamw", 1e-2, None, "diverged"),   # high edge of a grid with a diverged run
            row("m", "soap", 1e-3, None, "failed")]
    best = best_learning_rates(rows, ["size", "optimizer"])
    picked = {(b["size"], b["optimizer"]): (b["best_lr"], b["edge"], b["finished"]) for b in best}
    assert picked == {("s", "adamw"): (3e-3, "", "3/3"), ("s", "soap"): (1e-3, "low", "2/3"),
                      ("m", "adamw"): (1e-3, "low", "1/3"), ("m", "soap"): (None, "", "0/1")}
    text = summary(rows, best, ["size", "optimizer"], "/r")
    assert "warning: s,soap,0.001: the best lr 0.001 is the smallest of its grid" in text
    warnings = text.split("warning: ")[1:]
    assert len(warnings) == 2 and warnings[1].startswith("m,adamw,0.001: the best lr 0.001 is")
    assert "failed    m,soap,0.001" in text and "diverged  m,adamw,0.01" in text


@pytest.mark.slow
def test_a_sweep_through_a_local_ray_instance(data_root, tmp_path, monkeypatch):
    import ray  # the "ray" extra, which the "test" extra includes

    sweep_file = tmp_path / "one.py"
    sweep_file.write_text("from configs.sweeps.tiny import tiny_config\n"
                          "from lm.sweep.spec import Sweep, product\n\n\n"
                          "def get_sweep():\n"
                          "    return Sweep(tiny_config(), product(lr=[3e-3]))\n")
    monkeypatch.setenv("OPTISCALE_DATA_DIR", data_root)  # inherited by the Ray workers
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    context = ray.init(num_cpus=2, include_dashboard=False)  # on this machine, no network
    try:
        address = context.address_info["gcs_address"]
        result = subprocess.run([sys.executable, "-m", "lm.sweep", f"--config={sweep_file}",
                                 f"--root={tmp_path / 'root'}", "--executor=ray",
                                 f"--address={address}"],
                                cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        ray.shutdown()
    assert result.returncode == 0, result.stderr[-3000:]
    row = read_csv(tmp_path / "root" / "results.csv")["lr=0.003"]
    assert (row["status"], row["step"]) == ("finished", "16")
    assert "done: 16 steps" in (tmp_path / "root" / "lr=0.003" / "train.log").read_text()


def test_a_users_optimizer_module_is_swept_and_recorded_in_every_run(tmp_path, capsys,
                                                                      monkeypatch):
    """--import before the sweep file loads: its optimizer's section is in the base config and
    its name is accepted; every run's config carries the module (config.train.imports) so that
    worker processes import it. A module that fails to import is named with its error."""
    example = os.path.join(REPO, "examples", "laprop.py")
    sweep_file = tmp_path / "laprop_sweep.py"
    sweep_file.write_text(
        "from configs import base\nfrom lm.sweep.spec import Sweep\n\n\n"
        "def get_sweep():\n"
        "    config = base.get_config()\n"
        "    config.optimizer.laprop.b1 = 0.8\n"
        "    return Sweep(config, [{'optimizer': 'laprop', 'lr': lr} for lr in (1e-3, 1e-2)])\n")
    argv = [f"--sweep={sweep_file}", f"--runs_dir={tmp_path / 'runs'}", "--dry_run"]
    assert sweep_cli.main([*argv, f"--import={example}"]) == 0
    assert re.search(r"lr=0.001 .*\n.*lr=0.01 ", capsys.readouterr().out)
    swept = []
    monkeypatch.setattr(sweep_cli, "run_sweep", lambda sweep, *a, **k: swept.append(sweep) or 0)
    assert sweep_cli.main([*argv, f"--import={example}"]) == 0
    configs = [run.config for run in expand(swept[0])]
    assert [(c.optimizer.name, c.optimizer.laprop.b1, c.train.imports) for c in configs] == [
        ("laprop", 0.8, example)] * 2
    broken = tmp_path / "broken_opt.py"
    broken.write_text("import not_a_module_anywhere\n")
    assert sweep_cli.main([*argv, f"--import={broken}"]) == 2
    assert "broken_opt.py' failed to import: ModuleNotFoundError" in capsys.readouterr().err
