#!/usr/bin/env bash
# Train an optiscale config on a Cloud TPU VM or pod slice.
#
#   ./launch_tpu.sh --name my-tpu --zone us-central2-b --project my-project \
#       --accelerator v4-32 --config configs/base.py:d256_l4 --workdir /mnt/shared/runs/d256 \
#       -- --config.mesh.data=1 --config.mesh.fsdp=-1 --config.train.steps=20000
#
# Steps: create the TPU VM (or reuse it if it exists), copy this repository (git archive of HEAD
# plus uncommitted changes to tracked files) to every worker and install it in a venv with
# jax[tpu], start the run on all workers at once (OPTISCALE_DISTRIBUTED=1: every worker joins
# jax.distributed and the mesh spans all chips), then stream worker 0's log. Ctrl-C stops the
# streaming, not the run; rerun with --logs to stream again, --teardown to delete the VM.
# --dry-run prints the gcloud commands instead of running them.
#
# On a multi-host slice (v4-16 and up, v5e beyond 8 chips) every worker writes its shards of
# each checkpoint into --workdir, so it must be one shared directory (a Filestore/NFS mount or a
# gcsfuse-mounted bucket), the same path on every worker.
#
# The TPU software version follows the accelerator (v4: tpu-ubuntu2204-base, v5e:
# v2-alpha-tpuv5-lite, v5p: v2-alpha-tpuv5, v6e: v2-alpha-tpuv6e) and the workers install
# jax[tpu] at the version this project is tested with (JAX_VERSION). --async-collectives sets
# LIBTPU_INIT_ARGS to the flags MaxText's v5p runs use to overlap FSDP's all-gathers and
# reduce-scatters with compute (ASYNC_COLLECTIVE_FLAGS below). Check a config's memory and
# collectives before a pod-day with `python -m lm.compile --topology=v5p:4x4x4 ...`.
set -euo pipefail

JAX_VERSION=0.10.2  # tested with this jax; the workers install jax[tpu]==$JAX_VERSION
ASYNC_COLLECTIVE_FLAGS="--xla_tpu_enable_async_collective_fusion=true \
--xla_tpu_enable_async_collective_fusion_fuse_all_gather=true \
--xla_tpu_enable_async_collective_fusion_multiple_steps=true \
--xla_tpu_overlap_compute_collective_tc=true --xla_enable_async_all_gather=true"

runtime_for() {  # the TPU VM software version of an accelerator type
  case "$1" in
    v4-*) echo tpu-ubuntu2204-base ;;
    v5litepod-*|v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) echo "error: unknown accelerator type $1 (v4-8, v5litepod-16, v5p-8, v6e-8, ...);" \
            "give --runtime" >&2; return 2 ;;
  esac
}

usage() {
  cat <<'EOF'
usage: launch_tpu.sh --name NAME --zone ZONE --project PROJECT [options] [-- OVERRIDES...]
  --accelerator TYPE   TPU type for a new VM, e.g. v4-8, v4-32, v5litepod-16 (default v4-8)
  --runtime VERSION    TPU software version for a new VM (default: the accelerator's)
  --async-collectives  overlap collectives with compute (LIBTPU_INIT_ARGS, MaxText's flags)
  --config PATH        config file[:arg] (default configs/quickstart.py)
  --workdir DIR        run directory on the workers (default runs/NAME)
  --spot               create a Spot VM
  --logs               only stream worker 0's log of the run already started
  --teardown           delete the TPU VM (asks gcloud for no confirmation)
  --dry-run            print the commands instead of running them
  OVERRIDES            passed to python -m lm.train, e.g. --config.train.steps=1000
EOF
}

name="" zone="" project="" accelerator="v4-8" runtime=""
config="configs/quickstart.py" workdir="" spot=0 logs_only=0 teardown=0 dry_run=0 async=0
overrides=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --accelerator) accelerator="$2"; shift 2 ;;
    --runtime) runtime="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --spot) spot=1; shift ;;
    --async-collectives) async=1; shift ;;
    --logs) logs_only=1; shift ;;
    --teardown) teardown=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; overrides=("$@"); break ;;
    *) echo "error: unknown argument $1 (overrides of the config go after --)" >&2
       usage >&2; exit 2 ;;
  esac
done
for required in name zone project; do
  if [[ -z "${!required}" ]]; then
    echo "error: --$required is required" >&2; usage >&2; exit 2
  fi
done
workdir="${workdir:-runs/$name}"
runtime="${runtime:-$(runtime_for "$accelerator")}" || exit 2
config_file="${config%%:*}"
if [[ ! -f "$config_file" ]]; then
  echo "error: config file $config_file does not exist (run from the repository root)" >&2
  exit 2
fi

where=(--zone="$zone" --project="$project")
run() {  # run a command, or print it (shell-quoted) under --dry-run
  if [[ $dry_run -eq 1 ]]; then
    printf '%q ' "$@" | sed 's/ $//'; echo
  else
    "$@"
  fi
}
on_workers() {  # on_workers WORKERS COMMAND: ssh into the TPU VM's workers
  run gcloud compute tpus tpu-vm ssh "$name" "${where[@]}" --worker="$1" --command="$2"
}
stream_log() {
  on_workers 0 "tail -n +1 -F optiscale/train.log"
}

if [[ $teardown -eq 1 ]]; then
  run gcloud compute tpus tpu-vm delete "$name" "${where[@]}" --quiet
  exit 0
fi
if [[ $logs_only -eq 1 ]]; then
  stream_log
  exit 0
fi

# 1. Create the TPU VM unless it exists.
if [[ $dry_run -eq 1 ]] || ! gcloud compute tpus tpu-vm describe "$name" "${where[@]}" \
    >/dev/null 2>&1; then
  create=(gcloud compute tpus tpu-vm create "$name" "${where[@]}"
          --accelerator-type="$accelerator" --version="$runtime")
  [[ $spot -eq 1 ]] && create+=(--spot)
  [[ $dry_run -eq 1 ]] && echo "# if $name does not exist yet:"
  run "${create[@]}"
else
  echo "reusing TPU VM $name" >&2
fi

# 2. Copy the repository to every worker and install it.
archive="${TMPDIR:-/tmp}/optiscale-$name.tar.gz"
stash=$(git stash create 2>/dev/null || true)
run git archive --format=tar.gz -o "$archive" "${stash:-HEAD}"
run gcloud compute tpus tpu-vm scp "$archive" "$name:optiscale.tar.gz" "${where[@]}" --worker=all
on_workers all "rm -rf optiscale && mkdir optiscale && tar xzf optiscale.tar.gz -C optiscale \
&& cd optiscale && python3 -m venv .venv && . .venv/bin/activate \
&& pip install -q -e . 'jax[tpu]==$JAX_VERSION'"

# 3. Start the run on all workers (in the background, so the ssh sessions can end).
train="python -m lm.train --config=$(printf '%q' "$config") --workdir=$(printf '%q' "$workdir")"
for override in "${overrides[@]}"; do
  train+=" $(printf '%q' "$override")"
done
libtpu_args=""
[[ $async -eq 1 ]] && libtpu_args="LIBTPU_INIT_ARGS=$(printf '%q' "$ASYNC_COLLECTIVE_FLAGS") "
on_workers all "cd optiscale && . .venv/bin/activate && ${libtpu_args}OPTISCALE_DISTRIBUTED=1 \
nohup $train > train.log 2>&1 < /dev/null &"

# 4. Follow worker 0's log.
stream_log
