#!/usr/bin/env bash
# Trains (or resumes) one run on a Cloud TPU VM slice (e.g. v4-32 = 4 hosts): runs the same `train` command
# on every worker at once over `gcloud ... ssh --worker=all`. With `--distributed`, JAX finds the other
# workers from the TPU metadata; each worker feeds its own TPU cores their share of the global batch.
#
# Usage: launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [--config.key=value ...]
#   launch/tpu_vm.sh my-v4-32 us-central2-b configs/wmt14_de_en.py /mnt/shared/runs/wmt14
#
# What to change (environment):
#   REMOTE_DIR  the repository on every worker (default: ~/seq2seq_jax). The code AND its venv must exist on
#               every worker at that path, e.g. once per slice:
#                 gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command \
#                   "git clone URL ~/seq2seq_jax && cd ~/seq2seq_jax && python3 -m venv .venv &&
#                    .venv/bin/pip install -e . 'jax[tpu]'"
#   PYTHON      the interpreter on the workers (default: REMOTE_DIR/.venv/bin/python)
#   PROJECT     gcloud project (default: gcloud's configured one)
# WORKDIR must be one file system that all workers share (e.g. a Filestore/NFS mount): every worker restores
# the same checkpoint and process 0 writes the metrics. A gs:// path does not work (the workdir is written with
# plain file I/O). data.batch_size is the global batch: it must divide by the number of TPU cores of the slice.
# The command runs in the foreground of the ssh sessions; for long runs start it inside tmux/screen, or add
# `nohup ... &` to the remote command. Untested here (no TPU on the development machine): `bash -n` only.
set -euo pipefail

if (($# < 4)); then
  awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" >&2  # the header comment
  exit 2
fi
name=$1
zone=$2
config=$3
workdir=$4
shift 4

remote_dir=${REMOTE_DIR:-'~/seq2seq_jax'}  # expanded by the workers' shell
python=${PYTHON:-$remote_dir/.venv/bin/python}
# The remote command, each argument quoted for the workers' shell (REMOTE_DIR and PYTHON stay as given, so
# that ~ expands there).
args=$(printf ' %q' train --config "$config" --workdir "$workdir" --distributed --init-timeout 600 \
  --heartbeat-timeout 120 "$@")
command="cd $remote_dir && PYTHONPATH=. $python -m seq2seq_jax$args"

echo "on all workers of $name ($zone): $command" >&2
project=()
if [[ -n ${PROJECT:-} ]]; then project=(--project "$PROJECT"); fi
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" "${project[@]}" --worker=all --command "$command"
