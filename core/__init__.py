"""The foundation: JAX-free modules that every other part may use and that import nothing of the
project."""
