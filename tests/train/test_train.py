"""Training loop: exact resume, signals, corrupt checkpoints, NaN stop, bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from lm import train
from lm.errors import ConfigError
from lm.train import runtime
from lm.train.config_checks import check_override_keys
from lm.train.metrics_log import read_metrics
from tests import REPO


def load_state(workdir, step):
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    return ocp.PyTreeCheckpointer().restore(path)


def deterministic(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def interrupt_at(monkeypatch, stop_step):
    """Sends this process SIGTERM while step `stop_step` is being computed, as a scheduler would:
    right after the loop dispatched it."""
    real_build = runtime.build

    def build(*args, **kwargs):
        rt = real_build(*args, **kwargs)

        def train_step(state, windows):
            out = rt.train_step(state, windows)
            if int(out[0].step) == stop_step:
                signal.raise_signal(signal.SIGTERM)
            return out
        return rt._replace(train_step=train_step)

    monkeypatch.setattr(runtime, "build", build)


def assert_same_tree(a, b):
    flat_a, flat_b = (ocp.tree.to_flat_dict(t) for t in (a, b))
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
        np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]),
                                      err_msg=str(key))


@pytest.mark.slow
def test_exact_resume_is_bit_identical(tiny_config, tmp_path, monkeypatch):
    tiny_config.train.checkpoint_every = 7  # the interruption lands between two saves
    straight = str(tmp_path / "straight")
    summary = train.run(tiny_config, straight)
    assert summary["step"] == 20 and summary["stopped"] is None

    resumed = str(tmp_path / "resumed")
    with monkeypatch.context() as m:
        interrupt_at(m, 10)
        first = train.run(tiny_config, resumed)
    assert first["step"] == 10 and first["stopped"] == "SIGTERM"
    assert 10 in [int(s) for s in os.listdir(os.path.join(resumed, "checkpoints"))
                  if s.isdigit()]
    second = train.run(tiny_config, resumed)
    assert second["step"] == 20

    assert_same_tree(load_state(straight, 20), load_state(resumed, 20))
    rows_a, rows_b = read_metrics(straight), read_metrics(resumed)
    assert deterministic(rows_a) == deterministic(rows_b)
    assert [r["step"] for r in rows_a] == [5, 10, 15, 20]
    assert {"eval/en_docs_sample/bpb", "eval/code_py_sample/loss"} <= rows_a[-1].keys()


def write_user_sources(base) -> dict:
    """The sample corpora rewritten as a user's own: jsonl, parquet, text files, an HF dataset."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from data import corpora, documents
    lit, code, docs = (list(documents.read_texts(corpora.get(f"{n}_sample").sample_file))
                       for n in ("en_lit", "code_py", "en_docs"))
    for sub in ("lit", "code", "docs"):
        os.makedirs(os.path.join(base, sub))
    with open(os.path.join(base, "lit", "a.jsonl"), "w") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in lit)
    pq.write_table(pa.table({"text": code}), os.path.join(base, "code", "a.parquet"))
    for i, text in enumerate(docs):
        with open(os.path.join(base, "docs", f"{i}.txt"), "w") as f:
            f.write(text)
    datasets.Dataset.from_dict({"text": lit[::-1]}).save_to_disk(os.path.join(base, "hf_lit"))
    return {f"jsonl:{base}/lit/*.jsonl": 0.4, f"parquet:{base}/code/*.parquet": 0.3,
            f"text:{base}/docs/*.txt": 0.2, f"hf:{base}/hf_lit": 0.1}


@pytest.mark.slow
def test_a_mixture_of_user_sources_trains_and_resumes_bit_identically(tiny_config, tmp_path,
                                                                      monkeypatch):
    mixture = write_user_sources(str(tmp_path / "corpora"))
    tiny_config.data.mixture = mixture
    tiny_config.data.eval_corpora = tuple(mixture)
    tiny_config.data.workers = 1
    straight = str(tmp_path / "straight")
    assert train.run(tiny_config, straight)["step"] == 20
    resumed = str(tmp_path / "resumed")
    with monkeypatch.context() as m:
        interrupt_at(m, 10)
        assert train.run(tiny_config, resumed)["stopped"] == "SIGTERM"
    assert train.run(tiny_config, resumed)["step"] == 20
    assert_same_tree(load_state(straight, 20), load_state(resumed, 20))
    rows = read_metrics(straight)
    assert deterministic(rows) == deterministic(read_metrics(resumed))
    assert {f"eval/{name}/bpb" for name in ("lit", "code", "docs", "hf_lit")} <= rows[-1].keys()


@pytest.mark.slow
def test_a_run_whose_source_files_changed_is_not_resumed(tiny_config, tmp_path):
    corpus = tmp_path / "mine.jsonl"
    texts = [json.dumps({"text": f"document {i}: " + "words " * (40 + i)}) for i in range(30)]
    corpus.write_text("\n".join(texts[:20]) + "\n")
    tiny_config.data.update(dict(corpus=f"jsonl:{corpus}", eval_corpora=(f"jsonl:{corpus}",),
                                 workers=1, eval_batch_size=2, eval_batches=1))
    tiny_config.train.update(dict(steps=4, eval_every=4, checkpoint_every=2))
    tiny_config.schedule.warmup_steps = 1
    workdir = str(tmp_path / "run")
    assert train.run(tiny_config, workdir)["step"] == 4
    corpus.write_text("\n".join(texts) + "\n")
    tiny_config.train.steps = 6
    with pytest.raises(ConfigError, match=r"source 'mine' \(jsonl:.*\) changed since this run"):
        train.run(tiny_config, workdir)


@pytest.mark.slow
def test_metrics_rows_after_the_restored_step_are_recomputed(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    train.run(tiny_config, workdir)
    ckpt = os.path.join(workdir, "checkpoints")
    os.rename(os.path.join(ckpt, "20"), str(tmp_path / "moved20"))  # as if killed before saving
    train.run(tiny_config, workdir)
    rows = read_metrics(workdir)
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    assert os.path.exists(os.path.join(workdir, "metrics.jsonl.after_10"))


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_to_previous(tiny_config, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    train.run(tiny_config, workdir)
    state_dir = os.path.join(workdir, "checkpoints", "20", "state")
    for root, _, files in os.walk(state_dir):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    tiny_config.train.steps = 30
    summary = train.run(tiny_config, workdir)
    out = capsys.readouterr().out
    assert "checkpoint at step 20 is incomplete or corrupt" in out
    assert "resumed from the checkpoint at step 10" in out
    assert summary["step"] == 30
    assert os.path.isdir(os.path.join(workdir, "checkpoints_corrupt", "20"))


@pytest.mark.slow
def test_the_only_checkpoint_is_never_deleted(tiny_config, tmp_path):
    tiny_config.train.update(dict(steps=10, keep_checkpoints=1))
    workdir = str(tmp_path / "run")
    train.run(tiny_config, workdir)
    for root, _, files in os.walk(os.path.join(workdir, "checkpoints", "10", "state")):
        for name in files:
            os.remove(os.path.join(root, name))
    with pytest.raises(RuntimeError, match="no checkpoint .* could be restored"):
        train.run(tiny_config, workdir)
    assert os.path.isdir(os.path.join(workdir, "checkpoints_corrupt", "10"))


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_keeps_last_good_checkpoint(tiny_config, tmp_path):
    tiny_config.train.update(dict(steps=40, checkpoint_every=1))
    tiny_config.optimizer.update(dict(lr=1e30, grad_clip=0.0))
    tiny_config.schedule.warmup_steps = 1
    workdir = str(tmp_path / "run")
    with pytest.raises(FloatingPointError, match=r"at step (\d+): not finite") as err:
        train.run(tiny_config, workdir)
    bad_step = int(err.value.args[0].split("at step ")[1].split(":")[0])
    saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))
                   if s.isdigit())
    assert saved and saved[-1] == bad_step - 1


@pytest.mark.parametrize("field, value, message", [
    ("model.n_heads", 3, "not divisible by model.n_heads"),
    ("model.n_kv_heads", 3, "not divisible by model.n_kv_heads"),
    ("data.seq_len", 128, "larger than the rotary table"),
    ("model.norm", "batchnorm", "model.norm='batchnorm' is not one of"),
    ("train.microbatches", 3, "not divisible by train.microbatches"),
    ("schedule.name", "cosine_restarts", "cosine_restarts"),
    ("data.corpus", "no_such_corpus", "no_such_corpus"),
    ("model.vocab_size", 200, "model.vocab_size=200 is smaller than the tokenizer's 257 tokens"),
    ("data.mixture", {"en_docs_sample": -1.0}, "weights must be numbers >= 0"),
    ("data.mixture", {"en_docs_sample": 0.0}, "the weights sum to 0"),
    ("data.tokenizer", "hf:/no/such/dir", "no tokenizer.json there"),
])
def test_bad_config_fails_before_compiling(tiny_config, tmp_path, field, value, message):
    section, key = field.split(".")
    tiny_config[section][key] = value
    workdir = tmp_path / "run"
    with pytest.raises((ConfigError, ValueError, KeyError), match=message):
        train.run(tiny_config, str(workdir))
    assert not (workdir / "checkpoints").exists()


@pytest.mark.slow
def test_workdir_with_another_model_shape_is_refused(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    tiny_config.train.steps = 5
    tiny_config.schedule.warmup_steps = 2
    train.run(tiny_config, workdir)
    tiny_config.model.d_model = 64
    with pytest.raises(ConfigError, match=r"different model shape \(.*d_model: 32 -> 64"):
        train.run(tiny_config, workdir)


@pytest.mark.slow
def test_a_scanned_run_trains_resumes_and_refuses_the_unscanned_layout(tiny_config, tmp_path):
    """scan_layers changes the parameters' layout: a scanned run resumes from its own
    checkpoints (bit-identically), and its workdir refuses the unscanned model (and back)."""
    tiny_config.model.update(dict(scan_layers=True, remat="full"))
    tiny_config.train.update(dict(steps=10, checkpoint_every=5, layer_stats_every=5))
    workdir = str(tmp_path / "scanned")
    summary = train.run(tiny_config, workdir)
    rows = read_metrics(workdir)
    assert "params_rms/block_1/attn/query/kernel" in rows[0]  # per layer, unscanned names
    os.rename(os.path.join(workdir, "checkpoints", "10"), str(tmp_path / "moved10"))
    assert train.run(tiny_config, workdir)["eval/en_docs_sample/loss"] == \
        summary["eval/en_docs_sample/loss"]
    tiny_config.model.scan_layers = False
    with pytest.raises(ConfigError, match=r"different model shape \(scan_layers: True -> False"):
        train.run(tiny_config, workdir)


def test_unknown_override_key_names_the_key_and_close_matches():
    with pytest.raises(ConfigError, match=r"optimizer has no field 'learning_rate'"):
        check_override_keys(["--config=configs/quickstart.py",
                             "--config.optimizer.learning_rate=1"])
    with pytest.raises(ConfigError, match="Did you mean n_heads"):
        check_override_keys(["--config=configs/quickstart.py", "--config.model.n_head=2"])
    check_override_keys(["--config=configs/quickstart.py", "--config.model.n_heads=2"])


def test_an_override_key_given_twice_is_refused():
    """ml_collections would concatenate two tuples and keep the last scalar: one rule instead."""
    for key, values in (("data.eval_corpora", ("\"('en_docs',)\"", "\"('code_py',)\"")),
                        ("train.steps", ("10", "20"))):
        with pytest.raises(ConfigError, match=rf"--config.{key} is given twice; give each key "
                                              "once"):
            check_override_keys(["--config=configs/quickstart.py",
                                 *(f"--config.{key}={v}" for v in values)])


@pytest.mark.slow
def test_run_files_record_config_and_model(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    tiny_config.train.steps = 5
    tiny_config.schedule.warmup_steps = 2
    train.run(tiny_config, workdir)
    with open(os.path.join(workdir, "model.json")) as f:
        record = json.load(f)
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model"]["d_model"] == 32
    assert record["params/total"] == record["params/embedding"] + record["params/non_embedding"]
    assert record["flops_per_token"] > 6 * record["params/non_embedding"]
    row = read_metrics(workdir)[-1]
    assert row["tokens"] == 5 * 8 * 32 and row["flops"] == row["tokens"] * record["flops_per_token"]


@pytest.mark.slow
def test_cli_sigterm_saves_and_exits_zero(tmp_path, data_root):
    workdir = tmp_path / "run"
    cmd = [sys.executable, "-m", "lm.train", "--config=configs/quickstart.py",
           f"--workdir={workdir}", f"--config.data.root={data_root}",
           "--config.data.corpus=en_docs_sample", "--config.data.eval_corpora=('en_docs_sample',)",
           "--config.model.d_model=32", "--config.model.n_layers=1", "--config.data.seq_len=32",
           "--config.train.steps=100000", "--config.train.log_every=1",
           "--config.train.checkpoint_every=100000", "--config.data.eval_batches=1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 240
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no training progress within 240 s"
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped by SIGTERM at step" in out
    assert any(s.isdigit() for s in os.listdir(workdir / "checkpoints"))


def test_cli_reports_unknown_key_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lm.train", "--config=configs/quickstart.py",
                           f"--workdir={tmp_path}", "--config.train.step=5"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown config key --config.train.step" in proc.stderr
    assert "Did you mean steps" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_rerunning_a_finished_run_changes_nothing(tiny_config, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    tiny_config.train.steps = 5
    tiny_config.schedule.warmup_steps = 2
    train.run(tiny_config, workdir)
    before = read_metrics(workdir)
    summary = train.run(tiny_config, workdir)
    assert summary["step"] == 5 and "is complete" in capsys.readouterr().out
    assert read_metrics(workdir) == before


@pytest.mark.slow
def test_layer_stats_are_logged_at_their_cadence(tiny_config, tmp_path, monkeypatch):
    tiny_config.train.update(dict(steps=10, layer_stats_every=4, log_every=5))
    tiny_config.schedule.warmup_steps = 2
    workdir = str(tmp_path / "run")
    steps_with_stats = []  # the steps the loop ran the train step that computes statistics
    real_build = runtime.build

    def build(*args, **kwargs):
        rt = real_build(*args, **kwargs)

        def with_stats(state, windows):
            steps_with_stats.append(int(state.step) + 1)
            return rt.train_step_with_stats(state, windows)
        return rt._replace(train_step_with_stats=with_stats)

    monkeypatch.setattr(runtime, "build", build)
    train.run(tiny_config, workdir)
    assert steps_with_stats == [4, 8]
    rows = {r["step"]: r for r in read_metrics(workdir)}
    assert sorted(rows) == [4, 5, 8, 10]
    assert "params_rms/block_0/attn/query/kernel" in rows[4]
    assert "updates_rms/embedding" in rows[8] and "grads_rms/final_norm/scale" in rows[8]
    assert not any(k.startswith("params_rms/") for k in rows[5])
    # the RMS of the norm scale starts at 1 (ones init) and moves with training
    assert rows[4]["params_rms/final_norm/scale"] != 1.0


def test_bad_parameter_group_fails_before_compiling(tiny_config, tmp_path):
    tiny_config.optimizer.groups.embeddings.pattern = "embedings"
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"groups.embeddings.pattern='embedings' matches no "
                                          r"parameter; the parameters are: block_0"):
        train.run(tiny_config, str(workdir))
    assert not workdir.exists()
    check_override_keys(["--config=configs/quickstart.py",
                         "--config.optimizer.groups.embeddings.lr_multiplier=10"])


def test_loss_spikes_count_onsets_above_the_running_median():
    from lm.train.loss_spikes import LossSpikes
    spikes = LossSpikes(window=4, ratio=1.2)
    losses = [9.0, 5.0, 4.0, 4.0, 4.1, 5.0, 5.5, 4.0, 4.0, 4.0, 4.0, 6.0, 4.0]
    counts = [spikes.update(loss) for loss in losses]
    # 9 -> 5 early is no spike (window not full); 5.0 > 1.2 * median(5,4,4,4.1) starts one
    # that 5.5 continues; 6.0 starts a second
    assert counts == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2]
    assert LossSpikes(window=4, ratio=1.2, count=3).update(1.0) == 3
