#!/usr/bin/env bash
# Trains (or resumes) one run on this machine with all of its devices: one process, data-parallel over every
# GPU/TPU core JAX sees (parallel.mode, pmap by default). data.batch_size is the global batch and must be a
# multiple of the device count.
#
# Usage: launch/local.sh CONFIG WORKDIR [--config.key=value ...]
#   launch/local.sh configs/g2p_cmudict.py workdirs/g2p
#   launch/local.sh configs/reverse.py workdirs/reverse --config.train.num_steps=3000
#   CUDA_VISIBLE_DEVICES=0,1 launch/local.sh ...   # only some GPUs
#   CPU_DEVICES=8 launch/local.sh ...              # no accelerator: split the CPU into 8 fake devices (testing)
#
# What to change: nothing for one host; PYTHON (default: the repository's .venv, else python3) if the package
# lives elsewhere. Running the same command again on the same WORKDIR resumes from its latest checkpoint
# (with a larger --config.train.num_steps to train for longer).
set -euo pipefail

if (($# < 2)); then
  awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" >&2  # the header comment
  exit 2
fi
config=$1
workdir=$2
shift 2

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $root/.venv/bin/python ]]; then PYTHON=$root/.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n ${CPU_DEVICES:-} ]]; then
  export JAX_PLATFORMS=cpu
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$CPU_DEVICES"
fi

exec "$PYTHON" -m seq2seq_jax train --config "$config" --workdir "$workdir" "$@"
