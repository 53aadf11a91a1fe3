"""The main job: an optimizer comparison, tuned and measured as the papers do, into one directory.

    phases.py      the flow: tuning, the final sweep built from the tuned settings, the report
    presets.py     the presets (tiny, compare, cbs, small, paper) and search spaces
    tuning.py      coordinate descent for every optimizer (lm/study/tune.py), DIR/tune/<size>
    tune.py        coordinate descent: a pure function of the losses measured so far
    runs.py        study points as lm.sweep runs, their losses, TPU launch scripts
    fits.py        compute laws and loss-to-loss fits (through scaling/)
    hyperparameter_laws.py  lr(N), lr(N, D) from the per-size lr optima; the lr proposed at
                   the sizes not tuned (through scaling/hyperparameters.py)
    step_times.py  step-time ratios timed alone after training
    cbs.py         the cbs preset: critical batch size (Zhang et al. 2024)
    report.py      DIR/report.md with its tables, intervals, claims and plots
    cli.py         python -m lm.study --runs_dir=DIR [--preset=tiny|compare|cbs|small|paper]
"""
