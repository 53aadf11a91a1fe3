"""optiscale: JAX research codebase for LM scaling studies and optimizer comparisons."""
import setuptools

setuptools.setup(
    name="optiscale",
    version="0.1.0",
    description="LM scaling studies and optimizer comparisons in JAX.",
    license="Apache-2.0",
    license_files=["LICENSE"],
    python_requires=">=3.10",
    # core, lm and its subpackages, optim (with optim/hparams), data, configs (with
    # configs/sweeps), scaling, benchmarks
    packages=setuptools.find_packages(include=["core", "lm", "lm.*", "optim", "optim.*", "data",
                                               "configs", "configs.*", "scaling", "benchmarks"]),
    package_data={"data": ["samples/*.jsonl", "samples/*.md"]},
    install_requires=[
        # The oldest set the test suite was run with: jax 0.9.2, flax 0.11.0, optax 0.2.7,
        # orbax-checkpoint 0.11.21 (all pass but the MX scaled_dot backend, 4e-6 from the
        # emulation where the test allows 2e-6). jax.lax.scaled_dot needs jax 0.9.2 (0.8.0
        # has set_mesh and enable_x64); with optax < 0.2.7 the jitted train step leaves
        # weight-decay masks unapplied (optimizer.groups.X.weight_decay=False still decays).
        "jax>=0.9.2",
        "flax>=0.11",
        "optax>=0.2.7",
        "orbax-checkpoint>=0.11.21",
        "tensorstore>=0.1.71",
        "ml-collections>=0.1.1",
        "absl-py>=2.0",
        "numpy>=1.26",
        "tqdm>=4.66",
        "tokenizers>=0.20",
        "scipy>=1.11",
        "matplotlib>=3.8",
        "threadpoolctl>=3.1",
        # fsspec: run files at a URL workdir and source files at any URL (gs:// with gcsfs);
        # pyarrow: parquet sources; zstandard: .jsonl.zst; psutil: benchmarks.data_pipeline
        "fsspec>=2023.1",
        "pyarrow>=14",
        "zstandard>=0.21",
        "psutil>=5.9",
    ],
    extras_require={
        "ray": ["ray>=2.9"],  # python -m lm.sweep --executor=ray
        "slurm": ["submitit>=1.5.4"],  # python -m lm.sweep --executor=slurm (lm/sweep/slurm.py)
        # hf: sources (Hugging Face datasets); python -m lm.export and train.init_from=hf:DIR
        # (lm/hf/); lm-evaluation-harness
        "hf": ["datasets>=2.14", "transformers>=5", "safetensors", "torch", "lm-eval"],
        "gcs": ["gcsfs"],  # gs:// sources and workdirs (TensorStore reads gs:// data itself)
        # libtpu: TPU runs, and python -m lm.compile's ahead-of-time TPU programs on any
        # machine (on one without accelerators JAX runs on the CPU: core/accelerators.py)
        "tpu": ["jax[tpu]"],
        # jax's CUDA plugin and NVIDIA libraries (~5.5 GB): GPU runs, and python -m lm.compile
        # --topology=h100:8 (GPU nodes, lm/compile/gpus.py) on any machine, no GPU or driver
        "cuda": ["jax[cuda12]"],
        # train.loggers=jsonl,tensorboard (event files without TensorFlow)
        "tensorboard": ["tensorboardX>=2.6"],
        # train.loggers=jsonl,wandb (Weights & Biases; WANDB_MODE=offline needs no account)
        "wandb": ["wandb>=0.17"],
        "test": ["pytest>=8", "pytest-xdist>=3.5", "ray>=2.9", "datasets>=2.14",
                 "tensorboardX>=2.6", "tensorboard>=2.15", "wandb>=0.17", "submitit>=1.5.4",
                 "transformers>=5", "safetensors", "torch", "lm-eval"],
        "dev": ["pytest>=8", "pytest-xdist>=3.5", "ruff"],
    },
)
