"""The main job: an optimizer-comparison scaling study, end to end, into one directory.

    phases.py  the prose grid, the follow-up runs, launch scripts for TPU pods
    report.py  the fits (through scaling/) and DIR/report.md with its tables and plots
    cli.py     python -m lm.study --out=DIR [--preset=tiny|small|paper]
"""
