"""Metric writers besides metrics.jsonl (train.loggers): TensorBoard event files.

metrics.jsonl stays the source of truth that resume, sweeps and fits read; the others receive
the same rows. `tensorboard` writes WORKDIR/tb/ with tensorboardX (no TensorFlow needed), so
`tensorboard --logdir ROOT` shows every run under ROOT (a sweep's). A writer that fails warns
once and is dropped: it never stops training.
"""
import numbers
import os
import warnings

from lm.errors import ConfigError

LOGGERS = ("jsonl", "tensorboard")
TB_DIR = "tb"


def names(loggers: str) -> list[str]:
    """train.loggers ("jsonl,tensorboard") as a list of writer names."""
    return [name.strip() for name in loggers.split(",") if name.strip()]


def check(loggers: str) -> None:
    """train.loggers must name known writers, and their libraries must import."""
    wanted = names(loggers)
    unknown = [n for n in wanted if n not in LOGGERS]
    if unknown:
        raise ConfigError(f"train.loggers has {unknown}; use some of {', '.join(LOGGERS)} "
                          "(jsonl is always written)")
    if "tensorboard" in wanted:
        try:
            import tensorboardX  # noqa: F401
        except ImportError as err:
            raise ConfigError("train.loggers has tensorboard but tensorboardX is not "
                              f"installed ({err}); pip install tensorboardX") from err


class TensorBoard:
    """Each numeric field of a row as a scalar at the row's step. On a resume from step S,
    events after S (rewritten by the resumed run, as metrics.jsonl's rows are) are purged."""

    def __init__(self, workdir: str, start_step: int):
        from tensorboardX import SummaryWriter
        self.writer = SummaryWriter(os.path.join(workdir, TB_DIR),
                                    purge_step=start_step + 1 if start_step else None)

    def write(self, row: dict) -> None:
        for key, value in row.items():
            if key != "step" and isinstance(value, numbers.Real):
                self.writer.add_scalar(key, float(value), row["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Writers:
    """The run's extra writers; a failing one warns once and is dropped."""

    def __init__(self, loggers: str, workdir: str, start_step: int):
        self.writers = {}
        for name in names(loggers):
            if name == "tensorboard":
                self._guard(name, lambda: self.writers.__setitem__(
                    name, TensorBoard(workdir, start_step)))

    def write(self, row: dict) -> None:
        for name, writer in list(self.writers.items()):
            self._guard(name, lambda: writer.write(row))

    def close(self) -> None:
        for name, writer in list(self.writers.items()):
            self._guard(name, writer.close)

    def _guard(self, name: str, action) -> None:
        try:
            action()
        except Exception as err:  # noqa: BLE001 (a writer must never stop training)
            warnings.warn(f"train.loggers: the {name} writer failed ({type(err).__name__}: "
                          f"{err}); training goes on without it (metrics.jsonl has every row)")
            self.writers.pop(name, None)
