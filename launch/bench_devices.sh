#!/usr/bin/env bash
# Training throughput against the number of devices: a short run of CONFIG (default configs/g2p_cmudict.py,
# STEPS steps, no periodic evaluation or checkpoints) with 1, 2, 4, 8 devices, each in a fresh temporary
# workdir; prints the steady-state tokens/s (source + target tokens) from its metrics.jsonl. The first logged
# interval holds the compilation and is left out.
#
# Usage: launch/bench_devices.sh [CONFIG [--config.key=value ...]]
#   launch/bench_devices.sh
#   DEVICE_COUNTS="1 8" STEPS=200 launch/bench_devices.sh configs/g2p_cmudict.py --config.data.batch_size=256
#   PLATFORM=gpu launch/bench_devices.sh        # real GPUs 0..n-1 through CUDA_VISIBLE_DEVICES (untested here)
#
# Environment (what to change): DEVICE_COUNTS (default "1 2 4 8"), STEPS (60), LOG_EVERY (10),
# PLATFORM (cpu: fake CPU devices via XLA_FLAGS, which share the machine's cores, so this measures overhead
# rather than speed-up; gpu: the first n GPUs), PYTHON (default: the repository's .venv, else python3).
# data.batch_size stays the global batch, so it must divide by every device count.
# The benchmark pads every example to one length bucket of 16 (examples longer than 15 symbols are left out):
# with the config's finer buckets, new shapes keep compiling during the first hundreds of steps and would be
# counted as training time. Later --config overrides win over these.
set -euo pipefail

config=${1:-configs/g2p_cmudict.py}
if (($#)); then shift; fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $root/.venv/bin/python ]]; then PYTHON=$root/.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
steps=${STEPS:-60}
log_every=${LOG_EVERY:-10}
platform=${PLATFORM:-cpu}
if ((steps < 2 * log_every)); then
  echo "STEPS ($steps) must be at least 2 * LOG_EVERY ($log_every): the first interval is left out" >&2
  exit 2
fi
bench=(--config.train.num_steps="$steps" --config.train.log_every="$log_every"
       --config.train.eval_every=1000000000 --config.train.checkpoint_every=1000000000
       --config.train.eval_examples=16 --config.data.bucket_step=16
       --config.data.max_source_len=15 --config.data.max_target_len=15)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "$config, $steps steps, $platform, $(nproc) CPU cores; tokens/s over steps $((log_every + 1))..$steps"
printf '%8s %12s %10s %18s %8s\n' devices tokens/s steps/s tokens/s/device speedup
base=''
for n in ${DEVICE_COUNTS:-1 2 4 8}; do
  if [[ $platform == gpu ]]; then
    env_vars=("CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((n - 1)))")
  else
    env_vars=(JAX_PLATFORMS=cpu "XLA_FLAGS=${XLA_FLAGS:-} --xla_force_host_platform_device_count=$n")
  fi
  workdir=$tmp/devices-$n
  if ! env "${env_vars[@]}" "$PYTHON" -m seq2seq_jax train --config "$config" --workdir "$workdir" \
      "${bench[@]}" "$@" >"$tmp/out-$n.log" 2>&1; then
    echo "$n devices: training failed:" >&2
    tail -n 20 "$tmp/out-$n.log" >&2
    exit 1
  fi
  read -r tokens steps_per_s < <("$PYTHON" - "$workdir/metrics.jsonl" <<'EOF'
import json, sys
rows = sorted((r for r in map(json.loads, open(sys.argv[1])) if r['kind'] == 'train'), key=lambda r: r['step'])
seconds = tokens = steps = 0.0
for prev, row in zip(rows, rows[1:]):  # without the first interval (compilation)
  n = row['step'] - prev['step']
  seconds += n / row['steps_per_s']
  tokens += row['tokens_per_s'] * n / row['steps_per_s']
  steps += n
print(f'{tokens / seconds:.0f} {steps / seconds:.3f}' if seconds else 'nan nan')
EOF
)
  base=${base:-$tokens}
  printf '%8s %12s %10s %18s %8s\n' "$n" "$tokens" "$steps_per_s" "$((tokens / n))" \
    "$("$PYTHON" -c "print(f'{$tokens / $base:.2f}x')")"
done
