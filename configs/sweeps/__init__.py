"""Sweep files: each defines get_sweep() -> lm.sweep.spec.Sweep; run one with
`python -m lm.sweep --config=configs/sweeps/NAME.py --root=runs/sweeps/NAME`."""
