"""The workdir lock (runs/lock.py), rule by rule: a live holder is refused, a dead or reused PID on this machine and
a stale heartbeat from another one are taken over with a warning, and of eight takers racing for a free or a dead
lock exactly one wins. (test_faults.py checks a second `train` against a real run.)"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from seq2seq_jax.errors import WorkdirError
from seq2seq_jax.runs import lock as lock_lib


def _write_lock(workdir, **holder):
  with open(os.path.join(workdir, lock_lib.NAME), 'w', encoding='utf-8') as f:
    json.dump({**lock_lib._machine(), 'pid': os.getpid(), 'start_ticks': lock_lib._start_ticks(os.getpid()),
               'started': '2026-01-01T00:00:00Z', 'token': 'theirs', **holder}, f)


def test_lock_rules(tmp_path):
  workdir, warnings = str(tmp_path), []
  mine = lock_lib.WorkdirLock(workdir)
  mine.acquire()  # held by a live process on this machine: refused, naming host and PID
  with pytest.raises(WorkdirError, match=f'is being trained by PID {os.getpid()} on {socket.gethostname()}'):
    lock_lib.WorkdirLock(workdir).acquire()
  mine.release()
  assert os.listdir(workdir) == []
  gone = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
  for holder, why in (({'pid': int(gone.stdout)}, 'no longer running'),  # killed: taken over at once
                      ({'start_ticks': '1'}, 'no longer running')):       # its PID now runs another program
    _write_lock(workdir, **holder)
    taker = lock_lib.WorkdirLock(workdir, warn=warnings.append)
    taker.acquire()
    assert 'took over the lock' in warnings[-1] and why in warnings[-1]
    taker.release()
  _write_lock(workdir, host='node7', pid=4242, boot_id='other')  # another machine: its heartbeat counts
  with pytest.raises(WorkdirError, match='PID 4242 on node7.*taken over once its heartbeat is 300 s old'):
    lock_lib.WorkdirLock(workdir).acquire()
  old = time.time() - 400
  os.utime(os.path.join(workdir, lock_lib.NAME), (old, old))
  taker = lock_lib.WorkdirLock(workdir, warn=warnings.append)
  taker.acquire()
  assert 'heartbeat is 400 s old' in warnings[-1]
  taker.release()
  for stale in (False, True):  # eight at once, on a free workdir and on a dead lock: exactly one gets it
    if stale:
      _write_lock(workdir, pid=int(gone.stdout))
    results, start = [], threading.Barrier(8)

    def take():
      start.wait()
      try:
        lock_lib.WorkdirLock(workdir, warn=lambda m: None).acquire()
        results.append('got it')
      except WorkdirError:
        results.append('refused')
    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    assert sorted(results) == ['got it'] + ['refused'] * 7
    os.remove(os.path.join(workdir, lock_lib.NAME))
