"""Damaged run files and bad flags of lm.train and lm.compile are one message naming the file or
flag and the fix, never a traceback or a silently changed run (issue 31)."""
import json
import math
import os

import pytest

from core.run_format import DamagedFile
from lm import train
from lm.compile.program import topology_devices
from lm.errors import ConfigError
from lm.train import cli, config_flag, hooks
from lm.train import workdir as run_files


def test_a_mixture_naming_a_source_twice_is_refused():
    twice = '--config.data.mixture={"S": 0.9, "S2": 0.1, "S": 0.0}'
    with pytest.raises(ConfigError, match=r"--config.data.mixture names 'S' more than once "
                                          r"\(\{\"S\": 0.9, \"S2\": 0.1, \"S\": 0.0\}\)"):
        config_flag.parse(cli.PARSER, ["--workdir=w", twice])
    once = '--config.data.mixture={"S": 0.9, "S2": 0.1}'
    _, config = config_flag.parse(cli.PARSER, ["--workdir=w", once])
    assert dict(config.data.mixture) == {"S": 0.9, "S2": 0.1}


@pytest.mark.parametrize("text", ['{"model": {"d_mo', "[1, 2]", "\xff\xfe"])
def test_a_damaged_run_file_names_the_file_and_the_fix(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DamagedFile, match=rf"{path} is damaged \(.*\); restore it from a "
                                          rf"copy, or move {tmp_path} aside"):
        run_files.read_json(str(path))


@pytest.mark.slow
@pytest.mark.parametrize("name", [run_files.CONFIG, run_files.DATA])
def test_train_on_a_workdir_with_a_damaged_run_file_is_refused(short_config, tmp_path, name):
    workdir = str(tmp_path / "run")
    short_config.train.steps = 5
    train.run(short_config, workdir)
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(json.dumps({"a": 1})[:5])
    short_config.train.steps = 10
    with pytest.raises(DamagedFile, match=rf"{path} is damaged \(JSONDecodeError"):
        train.run(short_config, workdir)


class _Checkpointer:
    directory = "WORKDIR/checkpoints"

    def wait(self):
        pass

    def steps(self):
        return [1]


def test_a_non_finite_step_names_the_metric_that_is_not_finite():
    metrics = {"train/loss": 5.4987, "train/grad_norm": 1.1774, "train/update_norm": math.inf}
    with pytest.raises(FloatingPointError, match=r"^train/update_norm=inf at step 2: not finite "
                                                 r"\(training loss 5.4987, gradient norm 1.1774\)"):
        hooks.check_finite(_Checkpointer()).run(hooks.StepResult(2, None, metrics, {}))


def test_compile_refuses_an_empty_topology_before_compiling():
    with pytest.raises(ConfigError, match=r"--topology='' is empty: give a topology such as "
                                          r"v5p:2x2x2"):
        topology_devices("")
