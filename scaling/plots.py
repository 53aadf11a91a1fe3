"""PNG figures of each fit: data points, fitted curve, bootstrap band continued past the data
(the extrapolation), and held-out runs marked apart from the fitted ones.

Each function takes the fit and the data it was fitted on (held-out runs excluded: they come
from the fit's `heldout` list, at their `x`)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402

BAND = dict(color="tab:blue", alpha=0.2, linewidth=0)
HELD = dict(marker="*", s=160, color="tab:red", edgecolor="black", zorder=5,
            label="held out (predicted)")


def _band(ax, x, estimates, label):
    """Fitted curve and its band; returns the arrays for callers that annotate them."""
    value = np.array([e.value for e in estimates])
    low, high = np.array([e.low for e in estimates]), np.array([e.high for e in estimates])
    ax.fill_between(x, low, high, label=f"{estimates[0].level:.0%} bootstrap band", **BAND)
    ax.plot(x, value, color="tab:blue", label=label)
    return value


def _extrapolation_marker(ax, x_fitted_max):
    ax.axvline(x_fitted_max, color="gray", linestyle=":", linewidth=1)
    ax.annotate("extrapolation \u2192", (x_fitted_max, 1), xycoords=("data", "axes fraction"),
                xytext=(4, -14), textcoords="offset points", color="gray", fontsize=8)


def _span(values, heldout, beyond: float = 10.0, points: int = 120) -> np.ndarray:
    """Log-spaced x from the smallest fitted value to `beyond` x the largest fitted or held-out
    one: the band shows how fast the uncertainty grows past the data."""
    values = np.append(np.asarray(values, dtype=float), [h.x for h in heldout])
    return np.geomspace(values.min(), values.max() * beyond, points)


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _bars(estimates) -> np.ndarray:
    """Error-bar lengths below and above each value (zero where the percentile interval, from
    few resamples, does not contain the full-data value)."""
    values = np.array([e.value for e in estimates])
    return np.maximum(0, [values - [e.low for e in estimates],
                          np.array([e.high for e in estimates]) - values])


def _held_points(ax, heldout):
    """Held-out actuals (stars) and the predictions with their bands (open circles)."""
    if heldout:
        x = [h.x for h in heldout]
        ax.scatter(x, [h.actual for h in heldout], **HELD)
        ax.errorbar(x, [h.predicted.value for h in heldout], yerr=_bars([h.predicted
                                                                          for h in heldout]),
                    fmt="o", color="tab:red", mfc="white", capsize=3, label="prediction")


def plot_compute_law(fit, compute, loss, path: str) -> str:
    """Loss against FLOPs: the fitted runs, their frontier, the law and its band."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.scatter(compute[~fit.frontier], loss[~fit.frontier], color="lightgray", s=18,
               label="runs")
    ax.scatter(compute[fit.frontier], loss[fit.frontier], color="black", s=22,
               label="compute frontier (fitted)")
    grid = _span(compute[fit.frontier], fit.heldout)
    e, big_a, alpha = fit.point
    _band(ax, grid, fit.predict(grid), f"L = {e:.3g} + {big_a:.3g} C^-{alpha:.3g}")
    _held_points(ax, fit.heldout)
    _extrapolation_marker(ax, compute[fit.frontier].max())
    ax.set(xscale="log", xlabel="training FLOPs C", ylabel="final loss",
           title="Compute law on the frontier")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_chinchilla(fit, n, d, loss, path: str) -> str:
    """Left: loss against C = 6ND with the loss at the compute-optimal allocation; right:
    predicted against observed loss."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    compute = 6 * n * d
    points = left.scatter(compute, loss, c=np.log10(n), cmap="viridis", s=14,
                          label="fitted runs")
    fig.colorbar(points, ax=left, label="log10 N")
    grid = _span(compute, fit.heldout)
    _band(left, grid, fit.optimal_allocation(grid)["loss"], "L(N*(C), D*(C))")
    _held_points(left, fit.heldout)
    _extrapolation_marker(left, compute.max())
    p = fit.params
    left.set(xscale="log", xlabel="C = 6 N D (FLOPs)", ylabel="loss",
             title=f"E={p['E'].value:.3g}, A={p['A'].value:.4g}, B={p['B'].value:.4g}, "
                   f"\u03b1={p['alpha'].value:.3g}, \u03b2={p['beta'].value:.3g}")
    left.legend(fontsize=8)
    right.scatter(loss, [e.value for e in fit.predict(n, d)], s=12, color="tab:blue",
                  label="fitted runs")
    if fit.heldout:
        right.scatter([h.actual for h in fit.heldout],
                      [h.predicted.value for h in fit.heldout], **HELD)
    ends = [min([loss.min()] + [h.actual for h in fit.heldout]), loss.max()]
    right.plot(ends, ends, color="black", linewidth=1)
    right.set(xlabel="observed loss", ylabel="predicted loss", title="Fit quality")
    right.legend(fontsize=8)
    return _save(fig, path)


def plot_isoflop(fit, n, loss, budgets, path: str) -> str:
    """Left: IsoFLOP profiles and their parabolas; right: N_opt against C with the power law."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(fit.budgets)))
    for c, coefficients, color in zip(fit.budgets, fit.parabolas, colors):
        at = np.isclose(budgets, c)
        left.scatter(n[at], loss[at], color=color, s=16)
        grid = np.geomspace(n[at].min(), n[at].max(), 60)
        left.plot(grid, np.polyval(coefficients, np.log(grid)), color=color,
                  label=f"C={c:.2g}")
    left.scatter(fit.n_opt, fit.loss_min, marker="x", color="black", zorder=4, label="minima")
    left.set(xscale="log", xlabel="N", ylabel="final loss", title="IsoFLOP profiles")
    left.legend(fontsize=7)
    right.scatter(fit.budgets, fit.n_opt, color="black", label="fitted minima")
    grid = _span(fit.budgets, fit.heldout)
    _band(right, grid, fit.predict(grid)["N_opt"],
          f"N_opt = {fit.point[2]:.3g} C^{fit.point[0]:.3f}")
    _held_points(right, [h for h in fit.heldout if h.label.startswith("N_opt")])
    _extrapolation_marker(right, fit.budgets.max())
    right.set(xscale="log", yscale="log", xlabel="C (FLOPs)", ylabel="N_opt",
              title="Approach 2 allocation")
    right.legend(fontsize=8)
    return _save(fig, path)


def plot_loss_to_loss(fit, path: str) -> str:
    """L_y against L_x: fitted pairs, the shifted power law down to lower losses, held out."""
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    ax.scatter(fit.x_loss, fit.y_loss, s=14, color="black", label="fitted pairs")
    k, kappa, e_x, e_y = fit.point
    lowest = min([fit.x_loss.min()] + [h.x for h in fit.heldout])
    start = e_x + 0.8 * (lowest - e_x)
    grid = np.linspace(start, fit.x_loss.max(), 150)
    _band(ax, grid, fit.predict(grid),
          f"L_y = {k:.3g} (L_x - {e_x:.3g})^{kappa:.3g} + {e_y:.3g}")
    _held_points(ax, fit.heldout)
    ax.axvline(fit.x_loss.min(), color="gray", linestyle=":", linewidth=1)
    ax.annotate("\u2190 extrapolation", (fit.x_loss.min(), 1),
                xycoords=("data", "axes fraction"), xytext=(-80, -14),
                textcoords="offset points", color="gray", fontsize=8)
    ax.set(xlabel=f"L_x: {fit.x_label}", ylabel=f"L_y: {fit.y_label}",
           title=f"Loss-to-loss ({fit.kind.replace('_', '-')})")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_critical_batch(fit, path: str) -> str:
    """Left: steps to target against batch size per model size, S(B) fits and B*; middle: B*
    against N with the power law and held-out sizes; right: B* against the data D* a size
    needs at B* (Zhang et al. 2024 find B* follows D, not N)."""
    fig, (left, right, by_data) = plt.subplots(1, 3, figsize=(17, 4.8))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(fit.sweeps)))
    for sweep, color in zip(fit.sweeps, colors):
        left.scatter(sweep.batch, sweep.steps, color=color, s=16)
        grid = np.geomspace(sweep.batch.min(), sweep.batch.max(), 60)
        left.plot(grid, sweep.a + sweep.b / grid, color=color, label=f"N={sweep.n:.3g}")
        left.axvline(sweep.cbs.value, color=color, linestyle="--", linewidth=1)
    left.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="steps to target",
             title=f"S(B) = a + b/B; dashed: B* ({fit.overhead:.0%} over linear)")
    left.legend(fontsize=7)
    sizes = np.array([s.n for s in fit.sweeps])
    cbs = [s.cbs for s in fit.sweeps]
    right.errorbar(sizes, [c.value for c in cbs], yerr=_bars(cbs), fmt="o", color="black",
                   capsize=3, label="B* (fitted sizes)")
    grid = _span(sizes, fit.heldout)
    _band(right, grid, fit.predict_from_n(grid),
          f"B* = {fit.point[0]:.3g} N^{fit.point[1]:.3f}")
    _held_points(right, fit.heldout)
    _extrapolation_marker(right, sizes.max())
    right.set(xscale="log", yscale="log", xlabel="N", ylabel="critical batch size B*",
              title="CBS against model size")
    right.legend(fontsize=8)
    tokens = [s.tokens for s in fit.sweeps]
    by_data.errorbar([t.value for t in tokens], [c.value for c in cbs], xerr=_bars(tokens),
                     yerr=_bars(cbs), fmt="o", color="black", capsize=3, label="B* (fitted sizes)")
    d_coef, d_exponent = fit.params["D_coef"].value, fit.params["D_exponent"].value
    grid = np.geomspace(min(t.value for t in tokens), max(t.value for t in tokens), 60)
    by_data.plot(grid, d_coef * grid**d_exponent, color="C0",
                 label=f"B* = {d_coef:.3g} D*^{d_exponent:.3f}")
    by_data.set(xscale="log", yscale="log", xlabel="D* = B* S(B*) (tokens)",
                ylabel="critical batch size B*", title="CBS against data size")
    by_data.legend(fontsize=8)
    return _save(fig, path)
