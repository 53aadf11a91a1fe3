"""lm.study's command line on a preset (lm/study/overrides.py): a user's optimizer module and
search file, the user's own corpus, tokenizer and ladder; each bad value refused by name before
anything is planned."""
import glob
import json
import os
import re

import pytest

from lm.errors import SweepError
from lm.study import cli, phases, presets

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "laprop.py")


def _preset(*argv):
    args = cli.PARSER.parse_args(list(argv))
    return phases.load_preset(args)


def _search_file(tmp_path, spaces) -> str:
    path = tmp_path / "search.json"
    path.write_text(json.dumps(spaces))
    return f"--search={path}"


def test_an_optimizer_from_a_users_module_joins_the_study_with_its_own_space(tmp_path):
    preset = _preset(f"--import={EXAMPLE}", "--optimizers=adamw,laprop")
    assert preset.optimizers == ["adamw", "laprop"]
    assert preset.run.train.imports == EXAMPLE  # every run imports it too
    assert list(preset.search.laprop.grids.lr) == [1e-3, 3e-3, 1e-2, 3e-2]
    narrowed = _preset(f"--import={EXAMPLE}", "--optimizers=adamw,laprop", _search_file(
        tmp_path, {"laprop": {"grids": {"lr": [3e-3, 1e-2], "b1": [0.9]}},
                   "adamw": {"grids": {"b2": [0.95, 0.99]}, "start": {"b2": 0.99}}}))
    assert dict(narrowed.search.laprop.start) == {"lr": 1e-2, "b1": 0.9, "b2": 0.95,
                                                  "warmup": 0.1}
    assert narrowed.search.adamw.start.b2 == 0.99
    assert narrowed.search.adamw.grids.lr == preset.search.adamw.grids.lr  # others unchanged


def test_a_dry_run_lists_the_users_optimizer(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert cli.main([f"--import={EXAMPLE}", "--optimizers=adamw,laprop", "--dry-run"]) == 0
    assert re.search(r"optimizer=laprop,lr=0.01,", capsys.readouterr().out)


@pytest.mark.parametrize("spaces, message", [
    ({"adamw": {"grids": {"lr": []}}}, "grid of 'lr' is empty"),
    ({"adamw": {"grids": {"b3": [0.9]}}}, "neither lr, warmup, grad_clip nor a hyperparameter"),
    ({"adamw": {"grids": {"b2": [0.9, 1.5]}}}, r"b2=1.5 must be < 1"),
    ({"adamw": {"start": {"lr": 0.5}}}, "start lr=0.5 is not on its grid"),
    ({"adamw": {"grid": {}}}, "unknown part"),
    ({"adamv": {"grids": {"lr": [1e-3]}}}, "no registered optimizer of that name"),
])
def test_a_bad_search_file_is_refused_by_name(tmp_path, spaces, message):
    with pytest.raises(SweepError, match=message):
        _preset(_search_file(tmp_path, spaces))


@pytest.mark.parametrize("text", [b"{lr: 3}", b'{"adamw": "\xff"}'])  # not JSON; not UTF-8
def test_a_search_file_that_is_not_json_is_refused(tmp_path, text):
    (tmp_path / "s.json").write_bytes(text)
    with pytest.raises(SweepError, match="not valid JSON"):
        _preset(f"--search={tmp_path / 's.json'}")


def test_the_users_corpus_tokenizer_and_ladder(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.jsonl").write_text('{"text": "mine"}\n')
    preset = _preset(f"--corpus=jsonl:{tmp_path}/notes/*.jsonl", "--pair_corpus=code_py_sample",
                     "--eval_corpora=en_docs", "--tokenizer=bpe", "--vocab_size=2048",
                     "--sizes=d32_l2,d48_l2,d64_l2")
    data = preset.run.data
    assert data.corpus == preset.prose == "notes"
    assert data.sources == {"notes": f"jsonl:{tmp_path}/notes/*.jsonl"}
    assert data.eval_corpora == ("notes", "code_py_sample", "en_docs")
    assert data.tokenizer_corpora == ("notes", "code_py_sample")  # a BPE of the study's data
    assert (data.tokenizer, data.vocab_size, preset.code) == ("bpe", 2048, "code_py_sample")
    assert (preset.sizes, preset.tune_sizes) == (["d32_l2", "d48_l2", "d64_l2"], ["d48_l2"])
    assert preset.code_sizes == preset.sizes and preset.seed_sizes == ["d48_l2"]
    compare = _preset("--preset=compare", "--sizes=d48_l2,d64_l2,d96_l2,d96_l3",
                      "--tune_sizes=d64_l2,d96_l2")
    assert compare.budget_sizes == compare.sizes  # the compare preset's budgets span the ladder
    assert compare.seed_sizes == ["d64_l2", "d96_l2"]


def test_a_corpus_that_matches_no_file_is_refused_before_training(tmp_path, capsys):
    argv = [f"--runs_dir={tmp_path / 'study'}", f"--corpus=jsonl:{tmp_path}/none/*.jsonl"]
    assert cli.main(argv) == 2
    assert "none/*.jsonl matches no file" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()
    assert cli.main([*argv, "--dry-run"]) == 0  # a plan for data still to come: a warning
    assert "warning: " in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--sizes=d32_l2,d40_l2"], "unknown model size 'd40_l2'"),
    (["--sizes=d32_l2,d32_l2"], "named twice"),
    (["--sizes=d32_l2,d64_l2", "--tune_sizes=d96_l2"], "d96_l2 not in the ladder"),
    (["--preset=cbs", "--tune_sizes=d32_l2"], "tunes the lr at every size"),
])
def test_a_bad_ladder_is_refused_by_name(argv, message):
    with pytest.raises(SweepError, match=message):
        _preset(*argv)


def _micro_tiny(name):
    """The tiny preset at a fraction of its cost, every search space cut to its lr grid (the
    search file given on the command line then narrows those)."""
    preset = GET_PRESET(name)
    preset.update(dict(steps=30, evals=3, bootstrap=20, noise_seeds=1, seeds=1,
                       data_multipliers=[2.0], anneal_fractions=[0.5]))
    for space in preset.search.values():
        space.grids = {"lr": list(space.grids.lr)}
        space.start = {"lr": space.start.lr}
        space.line = []
    preset.run.data.update(dict(eval_batches=2, eval_batch_size=8))
    return preset


GET_PRESET = presets.get_preset


@pytest.mark.slow
def test_a_users_optimizer_on_a_users_corpus_through_the_protocol(tmp_path, monkeypatch):
    """The docs' worked example in small: LaProp from examples/ against AdamW on a jsonl corpus
    of this repository's docs, runs in spawned worker processes (which import the module from
    config.train.imports)."""
    corpus = tmp_path / "notes"
    corpus.mkdir()
    docs = sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
    paragraphs = [p for doc in docs for p in open(doc).read().split("\n\n") if p]
    with open(corpus / "docs.jsonl", "w") as f:
        f.writelines(json.dumps({"text": p}) + "\n" for p in paragraphs)
    monkeypatch.setattr(presets, "get_preset", _micro_tiny)
    out = tmp_path / "study"
    assert cli.main([f"--runs_dir={out}", f"--import={EXAMPLE}", "--optimizers=adamw,laprop",
                     f"--corpus=jsonl:{corpus}/*.jsonl", "--pair_corpus=code_py_sample",
                     "--sizes=d32_l2,d48_l2", "--tune_sizes=d32_l2", "--processes=2",
                     "--grid=adamw:lr:1e-2",
                     _search_file(tmp_path, {"laprop": {"grids": {"lr": [3e-3, 1e-2]}}})]) == 0
    report = (out / "report.md").read_text()
    assert re.search(rf"training corpus `notes` \(`jsonl:{corpus}/\*.jsonl`\), fingerprint "
                     r"[0-9a-f]{64}", report), report.splitlines()[:8]
    assert re.search(r"\| d48_l2 \| laprop \| ", report)
    laprop_runs = list((out / "tune" / "d32_l2").glob("*optimizer=laprop*"))
    assert laprop_runs
    config = json.loads((laprop_runs[0] / "config.json").read_text())
    assert config["train"]["imports"] == EXAMPLE
    assert "laprop" in config["optimizer"]
