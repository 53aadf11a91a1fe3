"""Downstream evaluation of a run with lm-evaluation-harness tasks, on optiscale's own model.

    python -m lm.evaluate --workdir=runs/quickstart --tasks=lambada_openai,hellaswag --limit=100
    python -m lm.evaluate --workdir=runs/quickstart --tasks=my_task --include_path=tasks/

Loads the run as lm.sample does (its config, tokenizer and the parameters it evaluates with, at
its newest checkpoint that restores, or --step), scores the tasks through lm/train/harness.py and
prints the harness's table. The results go to WORKDIR/eval/harness_step<N>.json (written whole;
a rerun at the same step replaces it and says so) and, when the run logs to TensorBoard
(train.loggers), as scalars harness/<task>/<metric> at step N in an event file of its own in
WORKDIR/tb/ (TensorBoard merges a directory's files, so a trainer running in the workdir is not
disturbed). metrics.jsonl is left to the trainer: resume, sweeps and the scaling fits read its
last row as the run's state. The train hook (train.harness_tasks, train.harness_every) writes
the same fields into the trainer's own rows. Tasks the harness downloads need the network; a
task defined by local files (--include_path) does not.
"""
import sys
import warnings

from absl import logging

from core import cli
from lm import sample
from lm.errors import ConfigError
from lm.train import loggers

PARSER = cli.parser("python -m lm.evaluate", __doc__)
cli.add_path(PARSER, "workdir", required=True, use="the run evaluated")
PARSER.add_argument("--tasks", required=True,
                    help="harness tasks, groups or tags, comma-separated")
PARSER.add_argument("--step", type=int, default=-1, help="checkpoint step (-1: newest)")
PARSER.add_argument("--limit", type=int, default=0,
                    help="documents per task, the first ones (0: all)")
PARSER.add_argument("--batch_size", type=int, default=16, help="requests per forward pass")
PARSER.add_argument("--include_path", default="",
                    help="a directory of task YAML files besides the harness's own")


def log_to_tensorboard(trained: sample.TrainedModel, fields: dict) -> None:
    """The fields at the checkpoint's step in WORKDIR/tb/, if the run logs there."""
    if "tensorboard" not in loggers.names(trained.config.train.get("loggers", "jsonl")):
        return
    try:
        writer = loggers.TensorBoard(trained.workdir, 0)
        writer.write({"step": trained.step, **fields})
        writer.close()
    except Exception as err:  # noqa: BLE001 (the json file has every result)
        warnings.warn(f"TensorBoard: {type(err).__name__}: {err}; the results are in the json "
                      "file only")


@cli.main(ConfigError)
def main(argv) -> int:
    args = PARSER.parse_args(argv)
    logging.set_verbosity(logging.ERROR)  # not Orbax's notes on opening checkpoints read-only
    # lm_eval loads only once the flags parse
    from lm_eval.utils import make_table

    from lm.train import harness
    if args.limit < 0 or args.batch_size < 1:
        raise ConfigError(f"--limit={args.limit}, --batch_size={args.batch_size}: give a limit "
                          ">= 0 (0: every document) and a batch size >= 1")
    tasks = harness.task_names(args.tasks)
    harness.check_tasks(tasks, args.include_path)
    trained = sample.load(args.workdir, args.step)
    lm = harness.HarnessLM(trained.model, trained.params, trained.tokenizer, args.batch_size)
    results = harness.evaluate(lm, tasks, limit=args.limit, include_path=args.include_path)
    print(make_table(results))
    if results.get("groups"):
        print(make_table(results, "groups"))
    fields = harness.metric_fields(results)
    path = harness.write_results(trained.workdir, trained.step, results)
    log_to_tensorboard(trained, fields)
    print(f"step {trained.step}: {len(fields)} metrics written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
