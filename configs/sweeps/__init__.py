"""Sweep files: each defines get_sweep() -> lm.sweep.spec.Sweep; run one with
`python -m lm.sweep --sweep=configs/sweeps/NAME.py --runs_dir=runs/sweeps/NAME`."""
