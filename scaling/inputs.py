"""Input checks shared by the fits: bad data gets a clear error before any optimisation runs."""
import numpy as np


def positive_arrays(law: str, n_params: int, **named: np.ndarray) -> list[np.ndarray]:
    """The named arrays as floats, checked: equal length, finite, > 0, more points than the law
    has parameters (a law with as many parameters as points fits anything)."""
    arrays = {name: np.asarray(values, dtype=float).ravel() for name, values in named.items()}
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{law}: inputs differ in length: {lengths}")
    n = next(iter(lengths.values()))
    for name, a in arrays.items():
        bad = ~np.isfinite(a) | (a <= 0)
        if bad.any():
            raise ValueError(f"{law}: {bad.sum()} of {n} values of {name} are non-finite or not "
                             f"positive (first at index {np.flatnonzero(bad)[0]}: {a[bad][0]}); "
                             "drop unfinished or diverged runs before fitting")
    if n <= n_params:
        raise ValueError(f"{law}: {n} points for {n_params} parameters; a fit needs more points "
                         "than parameters (add runs)")
    return list(arrays.values())


def bootstrap_settings(n_bootstrap: int, level: float) -> None:
    """Errors for settings that would only fail after the (possibly long) point fit."""
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap={n_bootstrap}: need at least 1 bootstrap resample "
                         "(1000 for stable 95% intervals)")
    if not 0 < level < 1:
        raise ValueError(f"level={level}: the interval level must be in (0, 1), e.g. 0.95")


def require_distinct(law: str, name: str, values: np.ndarray, at_least: int) -> None:
    """An error unless `values` takes at least `at_least` distinct values (e.g. model sizes:
    with one size, the N term of a law is not identifiable)."""
    distinct = len(np.unique(values))
    if distinct < at_least:
        raise ValueError(f"{law}: {distinct} distinct {name} value(s); the fit needs at least "
                         f"{at_least} (add runs that vary {name})")
