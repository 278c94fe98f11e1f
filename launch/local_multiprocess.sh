#!/usr/bin/env bash
# Trains (or resumes) one run with N processes on this machine, joined by jax.distributed through a
# coordinator on 127.0.0.1 (a free port): the same code path as N hosts, for trying multi-host runs out.
# data.batch_size is the global batch over the devices of all processes.
#
# Usage: launch/local_multiprocess.sh N CONFIG WORKDIR [--config.key=value ...] [train flags ...]
#   launch/local_multiprocess.sh 2 configs/reverse.py /tmp/reverse --config.train.num_steps=200
#   DEVICES_PER_PROCESS=4 launch/local_multiprocess.sh 2 ...   # each process: 4 fake CPU devices (8 in all)
#   GPUS_PER_PROCESS=1 launch/local_multiprocess.sh 4 ...      # process i gets GPU i (CUDA_VISIBLE_DEVICES)
#
# Environment (what to change):
#   DEVICES_PER_PROCESS  split each process's CPU into that many fake devices (sets XLA_FLAGS, JAX_PLATFORMS=cpu)
#   GPUS_PER_PROCESS     give process i the GPUs i*G .. i*G+G-1 (untested here: this machine has no GPU)
#   TIMEOUT              seconds for the whole run (default 86400); then every process is stopped
#   PORT                 coordinator port (default: a free one)
#   LOG_DIR              where processes 1..N-1 log (default WORKDIR/logs); process 0 logs to this terminal
#   PYTHON               default: the repository's .venv, else python3
# Train flags such as --heartbeat-timeout 30 pass through. When a process fails, the others are stopped and
# the script exits with its status; run it again on the same WORKDIR to resume from the latest checkpoint.
set -euo pipefail

if (($# < 3)) || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" >&2  # the header comment
  exit 2
fi
num=$1
config=$2
workdir=$3
shift 3

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $root/.venv/bin/python ]]; then PYTHON=$root/.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n ${DEVICES_PER_PROCESS:-} ]]; then
  export JAX_PLATFORMS=cpu
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$DEVICES_PER_PROCESS"
fi
timeout_s=${TIMEOUT:-86400}
port=${PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
log_dir=${LOG_DIR:-$workdir/logs}
mkdir -p "$log_dir"

declare -A rank_of=()  # pid of `timeout` (leader of its process group) -> process id, while running

signal_all() {  # SIGNAL: to each running process's group (`timeout` and the Python process under it)
  local pid
  for pid in "${!rank_of[@]}"; do kill "-$1" -- "-$pid" 2>/dev/null || kill "-$1" "$pid" 2>/dev/null || true; done
}

stop_all() {  # SIGTERM (JAX may take it for a preemption notice and go on), then SIGKILL after 5 s
  signal_all TERM
  local pid alive
  for _ in $(seq 10); do
    alive=0
    for pid in "${!rank_of[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.5
  done
  signal_all KILL
}
trap 'stop_all; exit 130' INT TERM

echo "$num processes, coordinator 127.0.0.1:$port; logs of processes 1..$((num - 1)) in $log_dir" >&2
for ((i = 0; i < num; i++)); do
  gpus=()
  if [[ -n ${GPUS_PER_PROCESS:-} ]]; then
    gpus=("CUDA_VISIBLE_DEVICES=$(seq -s, $((i * GPUS_PER_PROCESS)) $(((i + 1) * GPUS_PER_PROCESS - 1)))")
  fi
  # timeout runs its command in a process group of its own: Ctrl-C reaches the processes through the trap.
  cmd=(env "${gpus[@]}" timeout --kill-after=30 "$timeout_s" "$PYTHON" -m seq2seq_jax train --config "$config"
       --workdir "$workdir" --coordinator "127.0.0.1:$port" --num-processes "$num" --process-id "$i" "$@")
  if ((i == 0)); then
    "${cmd[@]}" &
  else
    "${cmd[@]}" >>"$log_dir/process-$i.log" 2>&1 &
  fi
  rank_of[$!]=$i
done


while ((${#rank_of[@]})); do
  for pid in "${!rank_of[@]}"; do
    kill -0 "$pid" 2>/dev/null && continue
    rc=0
    wait "$pid" || rc=$?
    rank=${rank_of[$pid]}
    unset "rank_of[$pid]"
    if ((rc)); then
      ((rc == 124)) && echo "process $rank: timed out after $timeout_s s" >&2
      echo "process $rank failed (exit status $rc); stopping the others" >&2
      ((rank > 0)) && tail -n 20 "$log_dir/process-$rank.log" >&2
      stop_all
      for other in "${!rank_of[@]}"; do wait "$other" 2>/dev/null || true; done
      exit "$rc"
    fi
  done
  sleep 0.5
done
echo "all $num processes finished" >&2
exit 0
