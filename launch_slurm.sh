#!/usr/bin/env bash
# Train an optiscale config on GPU nodes of a SLURM cluster: an sbatch script.
#
#   sbatch --nodes=4 --partition=gpu launch_slurm.sh --config configs/base.py:d256_l4 \
#       --workdir /shared/runs/d256 -- --config.mesh.data=4 --config.mesh.fsdp=-1 \
#       --config.data.root=/shared/optiscale-data
#
# sbatch's own options (before the script's name) override the #SBATCH lines below: nodes,
# GPUs, time limit, partition, account. The script starts the run on every node at once with
# `srun python -m lm.train --config=... --workdir=...`; the processes join with jax.distributed
# (SLURM_NTASKS > 1, lm/train/distributed.py) and the mesh spans every GPU of every node.
#
# Layout: one process per node (--ntasks-per-node=1) drives its node's 8 GPUs; with
# --ntasks-per-node=8 there is one process per GPU instead. Each task's GPUs are picked from its
# CUDA_VISIBLE_DEVICES (lm/train/distributed.py); other splits need JAX_LOCAL_DEVICE_IDS.
#
# Storage: every process writes its shards of each checkpoint into --workdir, so it must be one
# directory every node sees at the same path (NFS, Lustre, GPFS; or a gs:// URL). The nodes also
# need this repository and its Python environment at the same paths: activate the environment
# before sbatch (sbatch passes the environment on) or set PYTHON=/path/to/venv/bin/python. Data:
# give a shared root with --config.data.root=DIR (check it beforehand with `python -m
# lm.train.prepare_data --check --config=... --config.data.root=DIR`); without one, process 0
# of each run prepares what is missing under its own cache while the others wait.
#
# Time limit and preemption: SLURM sends USR1 to this script (B:USR1) 300 s before the time
# limit; the script then sends SIGTERM to the run, which finishes its step, saves a checkpoint
# on every process and exits, and requeues the job (scontrol requeue): its next start resumes
# from that checkpoint (lm.train resumes from the newest checkpoint in --workdir). A preemption
# sends SIGTERM to every process of the job: the run saves and exits the same way, and SLURM
# requeues the job itself (--requeue, where the cluster's PreemptMode is REQUEUE). SIGTERM does
# not stop this script, so it waits for the run to save. Give the save enough time: the signal
# lead below, and the cluster's KillWait / GraceTime after a SIGTERM.
# Tested on one machine without SLURM (stand-ins for srun and scontrol run lm.train and record
# the requeue); the SLURM side (signal delivery, requeue, multi-node jax.distributed) is not
# tested here.
#
# --dry-run prints the srun command instead of running it (anywhere, without SLURM).
#
#SBATCH --job-name=optiscale
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

usage() {
  cat <<'EOF'
usage: sbatch [SBATCH OPTIONS] launch_slurm.sh --config PATH --workdir DIR [-- OVERRIDES...]
  --config PATH   config file[:arg] (default configs/quickstart.py)
  --workdir DIR   the run's directory, shared by every node (required)
  --dry-run       print the srun command instead of running it
  OVERRIDES       passed to python -m lm.train, e.g. --config.train.steps=1000
EOF
}

config="configs/quickstart.py" workdir="" dry_run=0
overrides=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; overrides=("$@"); break ;;
    *) echo "error: unknown argument $1 (overrides of the config go after --)" >&2
       usage >&2; exit 2 ;;
  esac
done
if [[ -z "$workdir" ]]; then
  echo "error: --workdir is required: a directory every node sees at the same path" >&2
  usage >&2; exit 2
fi
config_file="${config%%:*}"
if [[ ! -f "$config_file" ]]; then
  echo "error: config file $config_file does not exist (submit from the repository root)" >&2
  exit 2
fi
python="${PYTHON:-python}"
# --kill-on-bad-exit: a process that fails ends the others, which would wait in collectives.
step=(srun --kill-on-bad-exit=1 "$python" -m lm.train "--config=$config" "--workdir=$workdir"
      "${overrides[@]}")
if [[ $dry_run -eq 1 ]]; then
  echo "# on every node (SLURM_NTASKS processes join with jax.distributed):"
  printf '%q ' "${step[@]}" | sed 's/ $//'; echo
  echo "# on USR1 (300 s before the time limit): SIGTERM to the run, which saves a checkpoint;" \
       "then: scontrol requeue \$SLURM_JOB_ID"
  exit 0
fi
if [[ -z "${SLURM_JOB_ID:-}" ]]; then
  echo "error: not in a SLURM job: submit this script with sbatch (--dry-run prints the" \
       "command)" >&2
  exit 2
fi

requeue=0
on_time_limit() {  # USR1: stop the run (it saves a checkpoint), then requeue the job
  requeue=1
  echo "USR1: the time limit is near; the run saves a checkpoint and the job is requeued" >&2
  kill -TERM "$srun_pid" 2>/dev/null || true  # srun passes SIGTERM on to every process
}
trap on_time_limit USR1
trap 'echo "SIGTERM (preempted or cancelled): waiting for the run to save" >&2' TERM

"${step[@]}" &
srun_pid=$!
status=0
wait "$srun_pid" || status=$?
while kill -0 "$srun_pid" 2>/dev/null; do  # a trapped signal ended the wait, not the run
  status=0
  wait "$srun_pid" || status=$?
done
if [[ $requeue -eq 1 ]]; then
  echo "requeueing job $SLURM_JOB_ID (restart $((${SLURM_RESTART_COUNT:-0} + 1)))" >&2
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
