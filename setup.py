"""optiscale: JAX research codebase for LM scaling studies and optimizer comparisons."""
import pathlib

import setuptools

PACKAGES = [p for p in ("lm", "optim", "data", "configs", "scaling")
            if (pathlib.Path(__file__).parent / p / "__init__.py").exists()]

setuptools.setup(
    name="optiscale",
    version="0.1.0",
    description="LM scaling studies and optimizer comparisons in JAX.",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_data={"data": ["samples/*.jsonl", "samples/*.md"]},
    install_requires=[
        "jax>=0.4.35",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "tensorstore>=0.1.69",
        "ml-collections>=0.1.1",
        "absl-py>=2.0",
        "numpy>=1.26",
        "tqdm>=4.66",
        "tokenizers>=0.20",
        "scipy>=1.11",
        "matplotlib>=3.8",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        "ray": ["ray>=2.9"],  # python -m lm.sweep --executor=ray
        "test": ["pytest>=8", "pytest-xdist>=3.5", "ray>=2.9"],
        "dev": ["pytest>=8", "pytest-xdist>=3.5", "ruff"],
    },
)
