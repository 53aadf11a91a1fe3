"""The errors every part of `lm` may raise and catch: bad input that is reported as a message
with its fix (exit status 2), never as a traceback."""


class ConfigError(ValueError):
    """A config or workdir that cannot run; the message says how to fix it."""


class SweepError(ValueError):
    """A sweep (or study) that cannot run; raised before any training, with the fix."""
