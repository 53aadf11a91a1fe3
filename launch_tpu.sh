#!/usr/bin/env bash
# Train an optiscale config on a Cloud TPU VM or pod slice.
#
#   ./launch_tpu.sh --name my-tpu --zone us-central2-b --project my-project \
#       --accelerator v4-32 --config configs/base.py:d256_l4 --workdir /mnt/shared/runs/d256 \
#       --data-root gs://my-bucket/optiscale-data [--prepare-data] \
#       -- --config.mesh.data=1 --config.mesh.fsdp=-1 --config.train.steps=20000
#
# Steps: with --data-root, check here, before anything is created, that everything the config
# (with the overrides) needs is prepared under that root (`python -m lm.train.prepare_data
# --check`; this machine needs the repository installed); then create the TPU VM (or reuse it if
# it exists), copy this repository (git archive of HEAD plus uncommitted changes to tracked
# files) to every worker and install it in a venv with jax[tpu]; with --prepare-data, prepare
# what is missing on worker 0 alone (`python -m lm.train.prepare_data`) while the others wait;
# start the run on all workers at once (OPTISCALE_DISTRIBUTED=1: every worker joins
# jax.distributed and the mesh spans all chips; --config.data.root=ROOT), then stream worker
# 0's log. Ctrl-C stops the streaming, not the run; rerun with --logs to stream again,
# --teardown to delete the VM. --dry-run prints the commands instead of running them (the data
# check too: shown, not required to pass).
#
# Data: --data-root is a root every worker reads, a gs:// bucket (the TPU VM's service account
# needs read access, and write access with --prepare-data; the check here reads it with your
# application default credentials). If the check finds something missing, or cannot run, and
# --prepare-data is not given, nothing is created: prepare it here with the commands the check
# prints (`python -m data.prepare ... --data_root ROOT`, or all at once `python -m
# lm.train.prepare_data --config=... --config.data.root=ROOT`), or pass --prepare-data (which
# skips worker 0's preparation when the check finds nothing missing). Registered corpora are
# fetched to a local cache of the machine that prepares (~/.cache/optiscale); only the
# tokenizer and the token arrays go to the bucket. Without --data-root, each worker prepares its
# own copy under its ~/.cache/optiscale on first use.
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
  --data-root ROOT     data root every worker reads (gs://BUCKET/DIR), passed to the run as
                       --config.data.root=ROOT; first checks here, before creating anything,
                       that the config's data is prepared there (python -m
                       lm.train.prepare_data --check) and stops if not
  --prepare-data       prepare what the check finds missing on worker 0, after the install and
                       before the run starts on all workers (needs --data-root)
  --spot               create a Spot VM
  --logs               only stream worker 0's log of the run already started
  --teardown           delete the TPU VM (asks gcloud for no confirmation)
  --dry-run            print the commands instead of running them (the data check included)
  OVERRIDES            passed to python -m lm.train, e.g. --config.train.steps=1000
EOF
}

name="" zone="" project="" accelerator="v4-8" runtime=""
config="configs/quickstart.py" workdir="" spot=0 logs_only=0 teardown=0 dry_run=0 async=0
data_root="" prepare_data=0
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
    --data-root) data_root="$2"; shift 2 ;;
    --prepare-data) prepare_data=1; shift ;;
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
if [[ $prepare_data -eq 1 && -z "$data_root" ]]; then
  echo "error: --prepare-data needs --data-root ROOT (a gs:// root every worker reads)" >&2
  exit 2
fi
for override in "${overrides[@]}"; do
  if [[ -n "$data_root" && "$override" == --config.data.root=* ]]; then
    echo "error: give the data root once: --data-root $data_root sets --config.data.root" >&2
    exit 2
  fi
done
# The run config's arguments, the same for the data check, the preparation and the run.
config_args=("--config=$config" "${overrides[@]}")
[[ -n "$data_root" ]] && config_args+=("--config.data.root=$data_root")
quoted_config_args=""
for arg in "${config_args[@]}"; do
  quoted_config_args+=" $(printf '%q' "$arg")"
done
python="${PYTHON:-python}"  # the interpreter that has this repository installed, for the check

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

# 0. Check here that the data is prepared under the data root, before anything is created.
if [[ -n "$data_root" ]]; then
  check=("$python" -m lm.train.prepare_data --check "${config_args[@]}")
  if [[ $dry_run -eq 1 ]]; then
    echo "# check here that the config's data is prepared under $data_root (a launch stops" \
         "before creating anything if not$([[ $prepare_data -eq 1 ]] && echo \
         ", unless --prepare-data prepares it on worker 0"))"
    run "${check[@]}"
  else
    echo "checking the data under $data_root: ${check[*]}" >&2
    status=0
    JAX_PLATFORMS=cpu "${check[@]}" || status=$?
    if [[ $status -eq 0 && $prepare_data -eq 1 ]]; then
      echo "everything is prepared: --prepare-data has nothing to do" >&2
      prepare_data=0
    elif [[ $status -eq 1 && $prepare_data -eq 1 ]]; then
      echo "worker 0 prepares what is missing after the install (--prepare-data)" >&2
    elif [[ $status -eq 1 ]]; then
      echo "error: the data this config needs is not all prepared under $data_root (listed" \
           "above), so nothing was created. Either prepare it from this machine with the" \
           "commands above (\`python -m data.prepare ... --data_root $data_root\`, or all at" \
           "once \`python -m lm.train.prepare_data$quoted_config_args\`) and launch again," \
           "or pass --prepare-data to prepare it on worker 0 before the run starts." >&2
      exit 1
    elif [[ $status -ne 0 && $prepare_data -eq 1 ]]; then
      echo "warning: the data check could not run here (exit status $status; its error is" \
           "above); worker 0 prepares what is missing after the install (--prepare-data)" >&2
    elif [[ $status -ne 0 ]]; then
      echo "error: the data check could not run (exit status $status; its error is above)," \
           "so nothing was created; it needs this repository installed here (\`pip install" \
           "-e .\`, or PYTHON=/path/to/venv/bin/python), a config it accepts, and read" \
           "access to $data_root (\`gcloud auth application-default login\`); or pass" \
           "--prepare-data to leave the data to worker 0" >&2
      exit 2
    fi
  fi
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

# 3. With --prepare-data, prepare what is missing on worker 0 alone; the run starts after.
if [[ $prepare_data -eq 1 ]]; then
  [[ $dry_run -eq 1 ]] && echo "# prepare the data on worker 0 (the other workers wait)"
  if ! on_workers 0 "cd optiscale && . .venv/bin/activate && JAX_PLATFORMS=cpu \
python -m lm.train.prepare_data$quoted_config_args"; then
    echo "error: preparing the data on worker 0 failed (its output is above), so the run was" \
         "not started; fix that and launch again (the VM is reused, the preparation resumes)" >&2
    exit 1
  fi
fi

# 4. Start the run on all workers (in the background, so the ssh sessions can end).
train="python -m lm.train --config=$(printf '%q' "$config") --workdir=$(printf '%q' "$workdir")"
for arg in "${config_args[@]:1}"; do
  train+=" $(printf '%q' "$arg")"
done
libtpu_args=""
[[ $async -eq 1 ]] && libtpu_args="LIBTPU_INIT_ARGS=$(printf '%q' "$ASYNC_COLLECTIVE_FLAGS") "
on_workers all "cd optiscale && . .venv/bin/activate && ${libtpu_args}OPTISCALE_DISTRIBUTED=1 \
nohup $train > train.log 2>&1 < /dev/null &"

# 5. Follow worker 0's log.
stream_log
