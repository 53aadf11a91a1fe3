"""The main job: an optimizer comparison, tuned and measured as the papers do, into one directory.

    python -m lm.study --runs_dir=runs/study                     # tiny: <= 15 min on 2 CPU cores
    python -m lm.study --runs_dir=runs/study --dry_run           # runs, FLOPs, time estimate
    python -m lm.study --dry-run --optimizers=adamw,nadamw,muon   # a new study's runs
    python -m lm.study --runs_dir=runs/study --optimizers=adamw,soap
    python -m lm.study --runs_dir=runs/mine --corpus='jsonl:notes/*.jsonl'  # your data
    python -m lm.study --runs_dir=runs/mine --import=my_opt.py --optimizers=adamw,my_opt
    python -m lm.study --runs_dir=runs/compare --preset=compare  # the full protocol: hours
    python -m lm.study --runs_dir=runs/cbs --preset=cbs          # critical batch size
    python -m lm.study --runs_dir=/mnt/shared/study --preset=paper  # TPU pod launch scripts

DIR is --runs_dir (its spelling before: --out, which still works). A dry run without it lists
the runs of a new study (an empty directory).

Phases (lm/study/presets.py sizes them; lm/study/phases.py builds them):
1. DIR/tune/<size>: every optimizer tuned by coordinate descent over its search space (lr, b1,
   b2, weight decay, warmup, eps, clipping and its own knobs), each move required to beat the
   seed noise of AdamW's start point (lm/study/tuning.py, Wen et al. 2025).
2. DIR/final: the other sizes with the lr re-tuned around the tuned point, more seeds of every
   tuned point, AdamW at other data budgets with the lr re-tuned at each, the other optimizers
   annealed on shortened runs, and AdamW on the code corpus.
3. DIR/report.md: final losses with seed intervals, effective-data speedups inside AdamW's
   measured budgets (else labelled extrapolations), steps to AdamW's loss from annealed runs,
   step times measured alone, compute laws and loss-to-loss fits resampled by run, the regime
   and the claims the numbers support (lm/study/report.py).
Running the same command again skips finished runs, resumes interrupted ones, replays the
searches and redoes the analysis. With --launch=tpu (the paper preset's default) a phase with
unfinished runs is not trained here: DIR/launch_<phase>.sh gets one launch_tpu.sh command per
run, and the study goes on once they are finished in DIR (a shared directory).
The cbs preset is its own job: DIR/cbs and DIR/report.md (lm/study/cbs.py).
"""
import tempfile

from absl import logging

from core import cli, user_modules
from lm.errors import SweepError
from lm.study import presets
from lm.study.phases import run_study
from lm.sweep import slurm

PARSER = cli.parser("python -m lm.study", __doc__)
cli.add_path(PARSER, "runs_dir", old=("--out",),
             use="the study's: its phases' runs, fits and report.md (required, except that "
                 "a dry run without it lists a new study's runs)")
PARSER.add_argument("--preset", default="tiny", choices=presets.PRESETS,
                    help="the study's sizes and protocol (lm/study/presets.py)")
PARSER.add_argument("--optimizers", default="",
                    help="comma-separated registry names (default: the preset's, "
                         f"{','.join(presets.OPTIMIZERS)}); adamw is the baseline")
PARSER.add_argument("--grid", action="append", default=[], metavar="NAME:KEY:V,V,...",
                    help="replace one grid of an optimizer's search space (repeatable, after "
                         "--search), e.g. soap:lr:3e-3,1e-2,3e-2; the spaces are in the "
                         "optimizers' definitions, optim/hparams/")
PARSER.add_argument("--search", default="", metavar="FILE",
                    help="a JSON file of search spaces that change or add optimizers' spaces "
                         "(the form: lm/study/overrides.py)")
user_modules.add_flag(PARSER)
PARSER.add_argument("--corpus", default="",
                    help="the training corpus, any source lm.train takes (a registered corpus, "
                         "jsonl:GLOB, parquet:GLOB, text:GLOB, hf:NAME); default: the preset's")
PARSER.add_argument("--pair_corpus", default="",
                    help="the second corpus AdamW trains on at every size, for the "
                         "loss-to-loss fits (default: the preset's, code_py)")
PARSER.add_argument("--eval_corpora", default="", metavar="SOURCE,...",
                    help="more validation sets (the training and pair corpora are always "
                         "evaluated)")
PARSER.add_argument("--tokenizer", default="",
                    help="byte | bpe | hf:PATH (default: the preset's); bpe is trained on the "
                         "study's corpora when --corpus is given")
PARSER.add_argument("--vocab_size", type=int, default=0, help="bpe: the vocabulary size")
PARSER.add_argument("--sizes", default="", metavar="SIZE,...",
                    help="the ladder (python -m lm.model.ladder lists the sizes); default: the "
                         "preset's")
PARSER.add_argument("--tune_sizes", default="", metavar="SIZE,...",
                    help="the sizes tuned by coordinate descent (default: the preset's that "
                         "are on the ladder)")
PARSER.add_argument("--dry_run", action="store_true",
                    help="list the runs, their FLOPs and estimated time; train nothing")
PARSER.add_argument("--launch", choices=("here", "tpu"), default=None,
                    help="here: train the runs; tpu: write launch_tpu.sh scripts (default: "
                         "tpu for the paper preset, else here)")
PARSER.add_argument("--executor", choices=("local", "ray", "slurm"), default="local",
                    help="where runs train: local processes, a Ray cluster or SLURM jobs "
                         "(the --slurm_* flags; see lm.sweep)")
PARSER.add_argument("--processes", type=int, default=0,
                    help="local runs at once (default 0: the preset's, at most the cores)")
PARSER.add_argument("--address", default="", help="ray: the cluster (see lm.sweep)")
PARSER.add_argument("--cpus_per_run", type=float, default=1.0, help="ray: CPUs per run")
PARSER.add_argument("--gpus_per_run", type=float, default=0.0, help="ray: GPUs per run")
slurm.add_flags(PARSER)


@cli.main(SweepError)
def main(argv) -> int:
    args = PARSER.parse_args(argv)
    args.argv = argv
    args.launch = args.launch or ("tpu" if args.preset == "paper" else "here")
    logging.set_verbosity(logging.WARNING)
    if args.processes < 0:
        raise cli.UsageError(f"--processes={args.processes}: give 0 (the preset's) or more")
    slurm.check_flags(PARSER, args)
    if args.runs_dir is None:
        if not args.dry_run:
            raise cli.UsageError("--runs_dir is required: the directory of the study's runs "
                                 "(a dry run without it lists a new study's runs)")
        with tempfile.TemporaryDirectory() as empty:
            args.runs_dir = empty
            return run_study(args)
    return run_study(args)

