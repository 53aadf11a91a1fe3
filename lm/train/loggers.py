"""Metric writers besides metrics.jsonl (train.loggers): TensorBoard event files and
Weights & Biases runs.

metrics.jsonl stays the source of truth that resume, sweeps and fits read; the others receive
the same rows. `tensorboard` writes WORKDIR/tb/ with tensorboardX (no TensorFlow needed), so
`tensorboard --logdir ROOT` shows every run under ROOT (a sweep's). `wandb` logs to a W&B run
whose id WORKDIR/wandb_id.txt keeps, so a resume continues it (WANDB_MODE=offline writes
WORKDIR/wandb/ for `wandb sync`). A writer that fails warns once and is dropped: it never stops
training.
"""
import importlib
import json
import numbers
import os
import uuid
import warnings

from lm.errors import ConfigError
from lm.train import workdir as run_files
from lm.train.settings import LOGGERS

# writer -> (the module it needs, how to install it)
LIBRARIES = {"tensorboard": ("tensorboardX", 'pip install -e ".[tensorboard]"'),
             "wandb": ("wandb", 'pip install -e ".[wandb]"')}
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
    for name in wanted:
        if name not in LIBRARIES:
            continue
        module, install = LIBRARIES[name]
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"train.loggers has {name} but {module} is not installed "
                              f"({err}); {install}") from err


def scalars(row: dict) -> dict:
    """The numeric fields of a metrics row, as floats, but its step."""
    return {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, numbers.Real)}


class TensorBoard:
    """Each numeric field of a row as a scalar at the row's step. On a resume from step S,
    events after S (rewritten by the resumed run, as metrics.jsonl's rows are) are purged."""

    def __init__(self, workdir: str, start_step: int):
        from tensorboardX import SummaryWriter
        self.writer = SummaryWriter(os.path.join(workdir, TB_DIR),
                                    purge_step=start_step + 1 if start_step else None)

    def write(self, row: dict) -> None:
        for key, value in scalars(row).items():
            self.writer.add_scalar(key, value, row["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandB:
    """Each numeric field of a row logged to a W&B run at the row's step. The run is named after
    the workdir and grouped by train.wandb_group (default: the workdir's parent, a sweep's
    root); its id, kept in WORKDIR/wandb_id.txt, makes a resume continue it. W&B history is
    append-only: on a resume from an earlier checkpoint, W&B drops the rewritten steps at or
    before the run's last logged one (metrics.jsonl has them). A URL workdir keeps the id file
    but not W&B's own files (wandb/ under the current directory or WANDB_DIR)."""

    def __init__(self, workdir: str, config):
        import wandb
        workdir = run_files.absolute(workdir).rstrip("/")
        t = config.train
        self.run = wandb.init(
            project=t.wandb_project, entity=t.wandb_entity or None,
            group=t.wandb_group or os.path.basename(os.path.dirname(workdir)) or None,
            name=os.path.basename(workdir), id=run_id(workdir), resume="allow",
            config=json.loads(config.to_json()),
            dir=workdir if run_files.is_local(workdir) else None,
            reinit="create_new",  # never return or finish another run of this process
            settings=wandb.Settings(console="off", save_code=False, quiet=True))

    def write(self, row: dict) -> None:
        self.run.log(scalars(row), step=row["step"])

    def close(self) -> None:
        self.run.finish()


def run_id(workdir: str) -> str:
    """The W&B run id of the run in `workdir`: made once, then read from WORKDIR/wandb_id.txt."""
    path = os.path.join(workdir, run_files.WANDB_ID)
    if run_files.exists(path):
        return run_files.read_text(path).strip()
    new_id = uuid.uuid4().hex[:16]
    run_files.write_text(path, new_id + "\n")
    return new_id


class Writers:
    """The run's extra writers; a failing one warns once and is dropped."""

    def __init__(self, loggers: str, workdir: str, start_step: int, config):
        self.writers = {}
        makers = {"tensorboard": lambda: TensorBoard(workdir, start_step),
                  "wandb": lambda: WandB(workdir, config)}
        for name in names(loggers):
            if name in makers:
                self._guard(name, lambda: self.writers.__setitem__(name, makers[name]()))

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
