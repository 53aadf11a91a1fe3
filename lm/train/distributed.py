"""Multi-process runs: joining the other processes, and agreeing with them.

A TPU pod slice runs one process per host and a GPU cluster typically one per node (or per GPU);
each runs the same command. `initialize()` calls `jax.distributed.initialize()` when the
environment says the run has more than one process:
  OPTISCALE_DISTRIBUTED=1     jax detects the cluster itself: Cloud TPU pods (launch_tpu.sh sets
                              this), SLURM, Open MPI, Kubernetes;
  SLURM_NTASKS > 1            an srun job step with several tasks (jax reads SLURM_* variables);
  JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID
                              any other cluster, named explicitly (also CPU processes on one
                              machine, which then talk through gloo).
Otherwise the run is a single process on its local devices.
"""
import os

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize() -> None:
    """jax.distributed.initialize() for a multi-process run (see the module docstring)."""
    if "JAX_NUM_PROCESSES" in os.environ:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices only
        jax.distributed.initialize(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                                   num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                                   process_id=int(os.environ["JAX_PROCESS_ID"]))
    elif (os.environ.get("OPTISCALE_DISTRIBUTED") == "1"
          or int(os.environ.get("SLURM_NTASKS", "1")) > 1):
        jax.distributed.initialize()


def any_process(flag: bool) -> bool:
    """True if `flag` is true on any process (e.g. one of them received SIGTERM)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))
