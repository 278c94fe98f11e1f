"""Several processes (hosts) in one run, with JAX's own distributed runtime.

`initialize` must run before anything touches JAX. Either name the coordinator explicitly (what
launch/local_multiprocess.sh does on 127.0.0.1) or let JAX detect the cluster (SLURM, Cloud TPU VMs,
Kubernetes) with `auto=True`.

A peer that dies: JAX's coordination service notices missing heartbeats and ends the survivors after
`heartbeat_timeout_s` seconds (JAX aborts the process); a survivor blocked in a collective is ended by the
same mechanism, so no run hangs forever. The timeouts are bounded by the flags below.
"""

import jax
import numpy as np

from seq2seq_jax.errors import ConfigError


def initialize(coordinator: str = '', num_processes: int = 0, process_id: int = -1, auto: bool = False,
               timeout_s: int = 120, heartbeat_timeout_s: int = 60) -> None:
  """Joins the run's processes; a no-op for a single-process run (no coordinator and not `auto`)."""
  if coordinator:
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise ConfigError(f'--coordinator {coordinator} needs --num-processes N >= 1 and 0 <= --process-id < N '
                        f'(got {num_processes}, {process_id})')
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, initialization_timeout=timeout_s,
                               heartbeat_timeout_seconds=heartbeat_timeout_s)
  elif auto:
    jax.distributed.initialize(initialization_timeout=timeout_s, heartbeat_timeout_seconds=heartbeat_timeout_s)


def add_arguments(parser) -> None:
  """The command-line flags of `initialize`."""
  g = parser.add_argument_group('multi-process runs (see launch/)')
  g.add_argument('--coordinator', default='', help='HOST:PORT of process 0 (all processes give the same)')
  g.add_argument('--num-processes', type=int, default=0)
  g.add_argument('--process-id', type=int, default=-1)
  g.add_argument('--distributed', action='store_true',
                 help='detect the cluster (SLURM, Cloud TPU VM, Kubernetes) instead of --coordinator')
  g.add_argument('--init-timeout', type=int, default=120, help='seconds to wait for all processes to join')
  g.add_argument('--heartbeat-timeout', type=int, default=60,
                 help='seconds after which a silent peer ends the run')


def from_args(args) -> None:
  initialize(args.coordinator, args.num_processes, args.process_id, args.distributed, args.init_timeout,
             args.heartbeat_timeout)


def broadcast(value: int) -> int:
  """Process 0's `value` in every process (the value itself in a single-process run): how the processes of a
  run agree on decisions that process 0 alone makes or must confirm (the workdir lock, the step to resume)."""
  if jax.process_count() == 1:
    return int(value)
  from jax.experimental import multihost_utils
  return int(multihost_utils.broadcast_one_to_all(np.int32(value)))
