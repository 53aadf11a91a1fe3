"""Multi-process runs: joining the other processes, and agreeing with them.

A TPU pod slice runs one process per host and a GPU cluster typically one per node (or per GPU);
each runs the same command. `initialize()` calls `jax.distributed.initialize()` when the
environment says the run has more than one process:
  OPTISCALE_DISTRIBUTED=1     jax detects the cluster itself: Cloud TPU pods (launch_tpu.sh sets
                              this), SLURM, Open MPI, Kubernetes;
  SLURM_NTASKS > 1            an srun job step with several tasks (jax reads SLURM_* variables;
                              launch_slurm.sh);
  JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID
                              any other cluster, named explicitly (also CPU processes on one
                              machine, which then talk through gloo).
Otherwise the run is a single process on its local devices.

Under srun, jax finds the coordinator (the step's first node), the process count and id in the
SLURM_* variables, but would give every task only GPU number SLURM_LOCALID: right for one task
per GPU, one GPU of 8 for one task per node. `slurm_local_device_ids` picks each task's GPUs
from what the task sees (CUDA_VISIBLE_DEVICES) and how many tasks share its node.
"""
import os
import re

import jax
import numpy as np
from jax.experimental import multihost_utils

from lm.errors import ConfigError

# What jax's SlurmCluster reads: present in every task that srun starts, not in the batch script.
SLURM_TASK_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
                        "SLURM_LOCALID")


def initialize() -> None:
    """jax.distributed.initialize() for a multi-process run (see the module docstring)."""
    env = os.environ
    if "JAX_NUM_PROCESSES" in env:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices only
        jax.distributed.initialize(coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
                                   num_processes=int(env["JAX_NUM_PROCESSES"]),
                                   process_id=int(env["JAX_PROCESS_ID"]))
    elif env.get("OPTISCALE_DISTRIBUTED") == "1" or int(env.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize(local_device_ids=slurm_local_device_ids(env))


def slurm_local_device_ids(env) -> list[int] | None:
    """The local GPU ids this SLURM task drives, for jax.distributed.initialize: [] for every GPU
    it sees (one task per node), [i] for one of them (one task per GPU); None outside SLURM, when
    JAX_LOCAL_DEVICE_IDS names them, or when the task's GPUs are not known (jax's choice:
    SLURM_LOCALID). ConfigError for a batch script that did not start its tasks with srun, or
    tasks that split a node's GPUs otherwise."""
    if "SLURM_JOB_ID" not in env or "JAX_LOCAL_DEVICE_IDS" in env:
        return None
    if not all(name in env for name in SLURM_TASK_VARIABLES):
        raise ConfigError(f"SLURM_NTASKS={env.get('SLURM_NTASKS')}, but this process is not one "
                          "of srun's tasks (no SLURM_STEP_NODELIST); start every process with "
                          "`srun python -m lm.train ...` (launch_slurm.sh)")
    tasks = tasks_on_node(env)
    if tasks == 1:
        return []  # one process per node: every GPU it sees
    visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if tasks is None or not visible:
        return None
    if len(visible) == 1:
        return [0]  # srun bound one GPU to each task (--gpus-per-task=1, --gpu-bind)
    if len(visible) == tasks:
        return [int(env["SLURM_LOCALID"])]  # one task per GPU, each seeing the node's GPUs
    raise ConfigError(f"{tasks} SLURM tasks on this node each see {len(visible)} GPUs "
                      f"(CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}); run one task per "
                      "node or one per GPU (srun --ntasks-per-node=1 or =GPUS), or name each "
                      "task's GPUs in JAX_LOCAL_DEVICE_IDS")


def tasks_on_node(env) -> int | None:
    """How many tasks of this job step run on this task's node, from SLURM_STEP_TASKS_PER_NODE
    (e.g. `8(x4)` or `2,1`, one count per node; SLURM_TASKS_PER_NODE outside a step) and
    SLURM_NODEID; None when they are missing."""
    layout = env.get("SLURM_STEP_TASKS_PER_NODE", env.get("SLURM_TASKS_PER_NODE"))
    if layout is None or "SLURM_NODEID" not in env:
        return None
    counts = []
    for group in layout.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", group.strip())
        if match is None:
            return None
        counts += [int(match[1])] * int(match[2] or 1)
    node = int(env["SLURM_NODEID"])
    return counts[node] if node < len(counts) else None


def any_process(flag: bool) -> bool:
    """True if `flag` is true on any process (e.g. one of them received SIGTERM)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))
