"""WORKDIR/metrics.jsonl: one JSON object per logged step, the file the scaling fits read.

Schema (keys are slash-separated, as TensorBoard and wandb group them):
    step                  optimizer steps completed
    tokens                training tokens seen (step * batch_size * seq_len)
    flops                 training FLOPs so far (tokens * flops_per_token, see lm/model/info.py)
    train/loss            cross-entropy of this step's batch, nats/token
    train/objective       loss + z-loss (the minimised quantity)
    train/grad_norm       global L2 norm of the (accumulated, unclipped) gradient
    train/update_norm     global L2 norm of the applied update
    train/param_norm      global L2 norm of the parameters after the step
    train/lr              learning rate used for this step
    time/step_s           mean wall time per step since the previous row
    time/tokens_per_s     training tokens per second since the previous row
    train/loss_spikes     loss spikes so far (lm/train/loss_spikes.py)
    mx/<kind>/saturated   MX runs: fraction of the <kind> operand's elements clipped to the
    mx/<kind>/clipped_blocks   format's max, of its blocks whose max clips, and of its nonzero
    mx/<kind>/underflow   elements that became 0; kinds as precision.mx_<kind>
                          (lm.model.mx.diagnostics)
    eval/<set>/loss       validation cross-entropy on <set>, nats/token (eval steps only)
    eval/<set>/bpb        the same in bits per byte (loss / ln 2 / bytes_per_token)
    params_rms/<path>     RMS of parameter <path> (e.g. block_0/attn/query/kernel), and
    grads_rms/<path>      of its gradient and
    updates_rms/<path>    of its applied update, every train.layer_stats_every steps
"""
import json
import os

from core.run_format import parse_metrics
from lm.train import workdir as run_files


class MetricsLog:
    """Appends rows; on resume, rows after the restored step are set aside, since the resumed
    run recomputes them (bit-identically) and the file must read as one uninterrupted run."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = os.path.join(workdir, run_files.METRICS)

    def resume_at(self, step: int) -> None:
        """Keeps rows with step <= `step`; later rows, and a torn last line (a kill or a full
        disk mid-write), move to metrics.jsonl.after_<step>."""
        if not run_files.exists(self.path):
            return
        text = run_files.read_text(self.path)
        rows, torn = parse_metrics(text, self.path)
        lines = [line if line.endswith("\n") else line + "\n"
                 for line in text.splitlines(keepends=True) if line.strip()]
        keep = [line for line, row in zip(lines, rows) if row["step"] <= step]
        if len(keep) == len(lines):
            return
        run_files.write_text(f"{self.path}.after_{step}", "".join(lines[len(keep):]))
        run_files.write_text(self.path, "".join(keep))
        print(f"metrics.jsonl: {len(lines) - len(keep)} rows after step {step}"
              f"{' (the last one torn)' if torn else ''} moved to {self.path}.after_{step}; "
              "the resumed run recomputes them", flush=True)

    def start_from(self, rows: list[dict]) -> None:
        """Begins a branched run's file with its parent's rows (up to the branch step); rows
        already there (a branch that failed before its first checkpoint) are set aside."""
        self.resume_at(0)
        run_files.write_text(self.path, "".join(json.dumps(row) + "\n" for row in rows))

    def last_row(self) -> dict:
        """The newest row, {} before the first."""
        rows = read_metrics(self.workdir) if run_files.exists(self.path) else []
        return rows[-1] if rows else {}

    def write(self, row: dict) -> None:
        run_files.append_text(self.path, json.dumps(row) + "\n")


def read_metrics(workdir: str) -> list[dict]:
    """The rows of a run's metrics.jsonl, without a torn last line (a run killed mid-write)."""
    path = os.path.join(workdir, run_files.METRICS)
    return parse_metrics(run_files.read_text(path), path)[0]
