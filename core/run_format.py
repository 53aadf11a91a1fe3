"""The files of a run directory that lm.train writes and scaling reads: their names and how
metrics.jsonl is read. Here, below both, since scaling may not import lm; what each row of
metrics.jsonl holds is the trainer's (lm/train/metrics_log.py)."""
import json

CONFIG = "config.json"      # the resolved config
MODEL = "model.json"        # the model's shape fields, parameter counts and FLOPs per token
METRICS = "metrics.jsonl"   # one JSON object per logged step
RUN_FILES = (CONFIG, MODEL, METRICS)  # what scaling reads of every run


def parse_metrics(text: str, path) -> tuple[list[dict], str]:
    """(rows, torn) of a metrics.jsonl text: `torn` is its last line if that line is not whole
    JSON (a run killed, or a disk full, mid-write), else "". Any other bad line is an error."""
    lines = [line for line in text.splitlines(keepends=True) if line.strip()]
    rows, torn = [], ""
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise ValueError(f"{path}: line {i + 1} is not JSON; the file was edited or "
                                 "damaged: remove that line") from None
            torn = line
    return rows, torn
