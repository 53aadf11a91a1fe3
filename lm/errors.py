"""The errors every part of `lm` may raise and catch: bad input that is reported as a message
with its fix (exit status 2), never as a traceback."""
import contextlib


class ConfigError(ValueError):
    """A config or workdir that cannot run; the message says how to fix it."""


class SweepError(ValueError):
    """A sweep (or study) that cannot run; raised before any training, with the fix."""


@contextlib.contextmanager
def as_sweep_error(prefix: str = ""):
    """A ConfigError raised inside becomes a SweepError (`prefix` + its message): the checks a
    sweep or study shares with the trainer (its directory, its lock) report as the sweep's."""
    try:
        yield
    except ConfigError as err:
        raise SweepError(prefix + str(err)) from None
