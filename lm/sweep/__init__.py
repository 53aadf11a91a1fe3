"""Many runs: a sweep file's runs, each an lm.train run in its own workdir under one root.

    spec.py       what a sweep is: points, axes, rules, run names (sweep files use it)
    runner.py     run_sweep: checks, skip / resume, results tables, --dry_run plan
    executors.py  where runs execute: in this process, local processes, Ray
    state.py      what a root and each run's workdir say about progress
    results.py    results.csv, best_lr.csv and the closing summary
    cli.py        python -m lm.sweep --sweep=configs/sweeps/NAME.py --runs_dir=DIR
"""
