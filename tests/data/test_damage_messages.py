"""Damaged or malformed data input (a truncated .jsonl.gz, a damaged meta.json, a mixture that is
no {source: weight} mapping) is one `error:` line naming the file or field and a fix that works,
never a traceback (issue 31)."""
from pathlib import Path

import ml_collections
import pytest

from data import needs, prepare, sources, verify
from tests.data.test_sources import write_jsonl

TEXTS = [f"document {i}: " + "words and more words " * 40 for i in range(200)]


def test_a_truncated_jsonl_gz_is_an_error_naming_the_file(tmp_path, capsys):
    path = tmp_path / "c.jsonl.gz"
    write_jsonl(path, TEXTS)
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    with pytest.raises(sources.SourceError, match=r"c.jsonl.gz is damaged: a truncated or corrupt "
                                                  r"compressed file \(EOFError"):
        prepare.ensure_prepared(tmp_path / "root", f"jsonl:{path}", workers=1)
    assert prepare.main(["--corpus", f"jsonl:{path}", "--tokenizer", "byte", "--data_root",
                         str(tmp_path / "root"), "--workers", "1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith(f"error: {path} is damaged") and "replace it" in line


def test_data_verify_on_a_damaged_meta_json_is_one_error_line(tmp_path, capsys):
    (tmp_path / "meta.json").write_text('{"splits": {"tra')  # torn
    assert verify.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: {tmp_path}/meta.json is damaged (JSONDecodeError")
    assert f"delete {tmp_path} and prepare it again" in err


def test_a_damaged_meta_json_names_a_prepare_command_that_works(tmp_path):
    corpus = tmp_path / "small.jsonl"
    write_jsonl(corpus, TEXTS[:20])
    spec = f"jsonl:{corpus}"
    prepared = prepare.ensure_prepared(tmp_path / "root", spec, workers=1)
    meta = Path(prepared.path, "meta.json")
    meta.write_text(meta.read_text()[:40])
    with pytest.raises(ValueError, match="meta.json is damaged") as err:
        prepare.ensure_prepared(tmp_path / "root", spec, workers=1)
    command = str(err.value).split("`")[1]
    assert f"--corpus {spec} " in command  # the spec, not the directory's name small-<hash>
    meta.unlink()
    args = command.split()[3:]  # python -m data.prepare ARGS
    assert prepare.main([*args, "--workers", "1"]) in (0, None)


def test_a_mixture_that_is_no_mapping_names_the_field_and_the_form():
    data = ml_collections.ConfigDict({"mixture": "S", "corpus": "en_docs"})
    with pytest.raises(ValueError, match=r"data.mixture='S' is not a \{source: weight\} mapping; "
                                         r"write it as --config.data.mixture='\{\"a\": 0.7"):
        needs.training_mixture(data)
