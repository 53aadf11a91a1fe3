"""benchmarks/accelerator.py --quick: the device benchmark runs end to end on CPU at tiny shapes,
so the first lent GPU runs a script known to work (issue 32)."""
import json
import math

import pytest

from benchmarks import accelerator


@pytest.mark.slow
def test_the_accelerator_benchmark_runs_end_to_end_on_cpu(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    accelerator.main(["--quick", f"--results_file={results}"])
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert capsys.readouterr().out.splitlines() == [json.dumps(r) for r in rows]
    assert [r["bench"] for r in rows] == ["losses", "matmul", "mfu", "mfu", "optimizer", "mx"]
    assert {r["shapes"] for r in rows} == {"quick"} and {r["backend"] for r in rows} == {"cpu"}
    losses = rows[0]
    assert len(losses["accelerator"]) == len(losses["cpu_float32"]) == 20
    assert losses["max_abs_difference"] == 0.0  # on a CPU, "auto" is float32: the same run
    assert [(r["size"], r["mfu"]) for r in rows[2:4]] == [("d32_l2", None), ("d64_l2", None)]
    for key in ("flops_per_s", "step_s", "over_adamw", "over_auto_policy", "model_flops_per_s"):
        for row in rows:
            assert key not in row or (math.isfinite(row[key]) and row[key] > 0), (key, row)
