"""Scaling-law fits with bootstrap intervals and held-out checks; NumPy/SciPy only, no JAX.

    python -m scaling.fit --runs=runs/ladder --law=chinchilla --out=reports/chinchilla

Modules, one job each:
    table.py          columnar Table and CSV reading (pandas-free)
    runs.py           run directories (config.json, model.json, metrics.jsonl) -> Table
    objective.py      Huber(1e-3) log-loss objective, multi-start L-BFGS, log-log power laws
    bootstrap.py      resampling runs, percentile intervals, prediction bands (Estimate)
    validation.py     held-out runs: which to hold out, prediction errors (HeldOut)
    guardrails.py     what each fit used; refusals and "degenerate fit" warnings
    inputs.py         input checks with clear errors
    compute_law.py    L(C) = E + A C^-alpha on the compute frontier
    chinchilla.py     L(N, D) Approach 3 and 2, compute-optimal N*(C), D*(C)
    loss_to_loss.py   shifted power laws between losses (Brandfonbrener et al. 2024)
    critical_batch.py steps to target, S(B) = a + b/B, critical batch size and its power laws
    hyperparameters.py a tuned hyperparameter's optimum per size and its power law in N and D
    plots.py          PNG figures;  report.py  fit.json and report.md;  fit.py  the CLI

Every fit is a function of arrays returning a frozen dataclass: `params` (name -> Estimate with
value, low, high), the bootstrap draws behind them, and `heldout` (HeldOut predictions).
"""
