"""lm/profile.py and train.profile_steps: a jax.profiler trace of the chosen steps, and its
summary (top ops by self time), and a trace being written, which is skipped."""
import os

import jax
import jax.numpy as jnp
import pytest

from lm import profile, train
from lm.errors import ConfigError


@pytest.mark.slow
def test_profile_steps_write_a_trace_of_those_steps(tiny_config, tmp_path):
    workdir = tmp_path / "run"
    tiny_config.train.update(dict(steps=6, profile_steps="3:4"))
    tiny_config.schedule.warmup_steps = 1
    train.run(tiny_config, str(workdir))
    traces = list((workdir / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0
    path, trace = profile.read_newest(str(workdir))
    assert path == str(traces[0])
    [host] = [p for p in profile.summarize(trace, top=5) if p["plane"] == "/host:CPU"]
    assert len(host["ops"]) == 5 and host["span_ms"] > 0
    assert all(0 < op["self_ms"] <= op["total_ms"] + 1e-9 for op in host["ops"])
    assert not any(op["name"].startswith("$") for op in host["ops"])  # no Python frames
    assert profile.main([str(workdir), "--json", "--top=3"]) == 0


def test_profile_self_times_subtract_nested_events():
    # A (0-100) holds B (10-40), which holds C (20-30); D (50-60) sits in A; E (200-210) alone
    events = [(0, 100, "A"), (10, 30, "B"), (20, 10, "C"), (50, 10, "D"), (200, 10, "E"),
              (300, 5, "C")]
    own, total, count = profile.self_times(events)
    assert dict(own) == {"A": 60, "B": 20, "C": 15, "D": 10, "E": 10}
    assert total["C"] == 15 and count["C"] == 2 and total["A"] == 100


def test_profile_summary_without_a_trace_names_the_flag(tmp_path, capsys):
    assert profile.main([str(tmp_path)]) == 2
    assert "--config.train.profile_steps=FIRST:LAST" in capsys.readouterr().err


@pytest.mark.parametrize("spec, message", [("3-4", "is not FIRST:LAST"),
                                           ("1:4", "2 <= FIRST <= LAST"),
                                           ("4:99", "LAST <= train.steps=20")])
def test_bad_profile_steps_are_refused_before_compiling(tiny_config, tmp_path, spec, message):
    tiny_config.train.profile_steps = spec
    with pytest.raises(ConfigError, match=message):
        train.run(tiny_config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_trace_being_written_is_skipped_for_the_one_before(tmp_path, capsys):
    with jax.profiler.trace(str(tmp_path / "profile")):
        jnp.arange(8.0).sum().block_until_ready()
    [whole] = (tmp_path / "profile").rglob("*.xplane.pb")
    being_written = tmp_path / "profile" / "later" / "host.xplane.pb"
    being_written.parent.mkdir()
    being_written.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    os.utime(being_written, (whole.stat().st_mtime + 1,) * 2)
    assert profile.main([str(tmp_path), "--top=3"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {being_written} is damaged" in err and f"trace: {whole}" in err
    assert profile.main([str(being_written)]) == 2  # named on its own: the error, one line
    err = capsys.readouterr().err
    assert err.startswith(f"error: {being_written} is damaged (") and err.count("\n") == 1
    assert "wait for its profile window (train.profile_steps) to end" in err
