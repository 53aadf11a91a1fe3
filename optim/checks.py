"""Argument checks of the custom transforms, one style for all: each raises ValueError naming
the argument, its value and the valid range, when the transform is built (before anything is
traced)."""
import numbers


def _number(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={value!r} must be a number")


def learning_rate(value) -> None:
    """A float >= 0 or a schedule (a callable of the step count)."""
    if callable(value):
        return
    _number("learning_rate", value)
    if not value >= 0:
        raise ValueError(f"learning_rate={value!r} must be >= 0 (or a schedule)")


def in_unit_interval(name: str, value, closed: bool = False) -> None:
    """0 <= value < 1 (value <= 1 if `closed`): decay rates of moving averages."""
    _number(name, value)
    if not (0 <= value <= 1 if closed else 0 <= value < 1):
        raise ValueError(f"{name}={value!r} must lie in [0, 1{']' if closed else ')'}")


def nonnegative(name: str, value) -> None:
    _number(name, value)
    if not value >= 0:
        raise ValueError(f"{name}={value!r} must be >= 0")


def positive(name: str, value) -> None:
    _number(name, value)
    if not value > 0:
        raise ValueError(f"{name}={value!r} must be > 0")


def integer(name: str, value, minimum: int = 1) -> None:
    """A whole number >= minimum (a step count, a frequency, a dimension)."""
    _number(name, value)
    if int(value) != value or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")


def optional_steps(name: str, value) -> None:
    """None (off) or a number of steps >= 1."""
    if value is not None:
        integer(name, value)


def one_of(name: str, value, options) -> None:
    if value not in options:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(options)}")
