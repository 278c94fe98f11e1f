"""Two training processes on 127.0.0.1 (jax.distributed, one CPU device each) against one process.

Checked: both processes end with the same parameters and the same losses as one process, only process 0 writes
metrics, a checkpoint written by 2 processes resumes in 1 and the other way round, a peer that never comes
or dies makes the other exit instead of hanging, and a SIGTERM to one process stops both after the same step.
Every subprocess has a timeout and is killed in a `finally`, so nothing here can hang CI.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import portpicker
import pytest

from seq2seq_jax.tools import experiments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Deterministic (no dropout, no sampling), so 1 and 2 processes see the same losses.
TINY = ['data.task=reverse', 'data.min_len=5', 'data.max_len=5', 'data.num_train=300', 'data.num_eval=16',
        'data.batch_size=16', 'model.embed_size=8', 'model.encoder_size=8', 'model.decoder_size=16',
        'model.attention_size=8', 'model.dropout=0.0', 'train.teacher_forcing=constant', 'train.log_every=5',
        'train.eval_every=10', 'train.checkpoint_every=10', 'train.eval_examples=16']
TIMEOUT = 240  # seconds for one (multi-process) run
FINISHED = re.compile(r'process (\d+): finished at step (\d+); parameters fingerprint (\w+)')


def _reap(procs, logs) -> list[str]:
  """Kills the stragglers (a peer that waits for a dead one must not outlive the test); returns each log."""
  for p in procs:
    if p.poll() is None:
      p.kill()
      p.wait(timeout=30)
  texts = []
  for log in logs:
    log.seek(0)
    texts.append(log.read())
    log.close()
  return texts


def _command(workdir: str, steps: int, *extra) -> list:
  return [sys.executable, '-m', 'seq2seq_jax', 'train', '--config', 'configs/reverse.py', '--workdir', workdir,
          *[f'--config.{o}' for o in TINY + [f'train.num_steps={steps}']], *extra]


def _run_all(*runs, timeout: float = TIMEOUT) -> list[list]:
  """Starts all `(workdir, steps, processes)` runs at once (processes 1: no distributed flags), waits for all;
  returns per run [(returncode, stderr)] by rank. Whatever still runs at the timeout (or on an error) is killed."""
  procs, logs = [], []
  try:
    for workdir, steps, processes in runs:
      port = portpicker.pick_unused_port()
      for rank in range(processes):
        dist = ['--coordinator', f'127.0.0.1:{port}', '--num-processes', str(processes), '--process-id', str(rank)]
        logs.append(open(f'{workdir}-{steps}-{rank}.log', 'w+', encoding='utf-8'))
        procs.append(subprocess.Popen(_command(workdir, steps, *(dist if processes > 1 else [])), cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=logs[-1]))
    deadline = time.monotonic() + timeout
    codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
  finally:
    texts = _reap(procs, logs)
  results = list(zip(codes, texts))
  out = []
  for _, _, processes in runs:
    out.append(results[:processes])
    results = results[processes:]
  return out


def _finished(stderr: str, step: int) -> str:
  """The parameters fingerprint that the process logged at the end of training."""
  found = FINISHED.findall(stderr)
  assert len(found) == 1 and int(found[0][1]) == step, stderr[-3000:]
  return found[0][2]


def _metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    return [json.loads(line) for line in f]


def _assert_same_curves(a: list[dict], b: list[dict]) -> None:
  assert [(r['step'], r['kind']) for r in a] == [(r['step'], r['kind']) for r in b]
  for ra, rb in zip(a, b):
    np.testing.assert_allclose(ra['loss'], rb['loss'], rtol=1e-4, err_msg=f'step {ra["step"]} {ra["kind"]}')


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """20 steps with 2 processes and with 1 process, in two workdirs."""
  base = tmp_path_factory.mktemp('multiprocess')
  two, one = str(base / 'two'), str(base / 'one')
  two_results, one_results = _run_all((two, 20, 2), (one, 20, 1))
  return {'two': (two, two_results), 'one': (one, one_results)}


def test_two_processes_train_like_one(runs):
  two, results = runs['two']
  assert [code for code, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
  fingerprints = [_finished(err, 20) for _, err in results]
  assert fingerprints[0] == fingerprints[1]  # the replicas stayed bitwise identical
  assert experiments.info(two, 'latest')['fingerprint'] == fingerprints[0]
  assert '2 cpu device(s) in 2 process(es)' in results[0][1]
  one, ((code, err),) = runs['one']
  assert code == 0, err[-3000:]
  assert '1 cpu device(s) in 1 process(es)' in err
  # Only process 0 writes metrics: as many lines as one process writes (4 train + 2 validation).
  rows = _metrics(two)
  assert [(r['step'], r['kind']) for r in rows] == [(5, 'train'), (10, 'train'), (10, 'validation'),
                                                    (15, 'train'), (20, 'train'), (20, 'validation')]
  _assert_same_curves(rows, _metrics(one))  # the same global batches: the same losses


def test_resume_across_process_counts(runs):
  """The 2-process checkpoint goes on in 1 process, the 1-process checkpoint in 2 processes."""
  two, one = runs['two'][0], runs['one'][0]
  [(code, err)], results = _run_all((two, 30, 1), (one, 30, 2))
  assert code == 0, err[-3000:]
  assert 'resuming from the checkpoint at step 20' in err
  single_fp = _finished(err, 30)
  assert [code for code, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
  for _, err in results:
    assert 'resuming from the checkpoint at step 20' in err
  fingerprints = [_finished(err, 30) for _, err in results]
  assert fingerprints[0] == fingerprints[1] == experiments.info(one, 'latest')['fingerprint']
  assert experiments.info(two, 'latest')['fingerprint'] == single_fp
  for workdir in (one, two):
    rows = _metrics(workdir)
    assert [(r['step'], r['kind']) for r in rows][-3:] == [(25, 'train'), (30, 'train'), (30, 'validation')]
    assert len(rows) == 9
    with open(os.path.join(workdir, 'run_info.json'), encoding='utf-8') as f:
      assert [r['started_at_step'] for r in json.load(f)] == [0, 20]  # written by process 0 only
  _assert_same_curves(_metrics(one), _metrics(two))


def _read(path: str) -> str:
  with open(path, encoding='utf-8') as f:
    return f.read()


def test_a_dead_peer_ends_the_run_instead_of_hanging(tmp_path):
  """Process 1 of one run never starts; process 1 of another is killed once it is set up. Both survivors end
  with an error within a bounded time (--init-timeout / --heartbeat-timeout 5 s)."""
  alone, orphan = str(tmp_path / 'alone'), str(tmp_path / 'orphan')
  paths = [f'{alone}-0.log', f'{orphan}-0.log', f'{orphan}-1.log']
  procs, ended = [], {}

  def note_ended():
    for i, p in enumerate(procs):
      if i not in ended and p.poll() is not None:
        ended[i] = time.monotonic()

  try:
    dist = ['--num-processes', '2', '--init-timeout', '5', '--heartbeat-timeout', '5', '--coordinator']
    ports = {alone: portpicker.pick_unused_port(), orphan: portpicker.pick_unused_port()}
    for (workdir, rank), path in zip(((alone, 0), (orphan, 0), (orphan, 1)), paths):
      with open(path, 'w', encoding='utf-8') as log:
        procs.append(subprocess.Popen(_command(workdir, 1000, *dist, f'127.0.0.1:{ports[workdir]}',
                                               '--process-id', str(rank)),
                                      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log))
    start = time.monotonic()
    while 'model:' not in _read(paths[2]):  # set up: it joined the run and built the model
      assert procs[2].poll() is None and time.monotonic() - start < TIMEOUT, 'process 1 never got going'
      note_ended()
      time.sleep(0.1)
    procs[2].kill()
    killed = time.monotonic()
    while not {0, 1} <= ended.keys() and time.monotonic() - killed < 90:
      note_ended()
      time.sleep(0.1)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait(timeout=30)
  assert ended[0] - start < 60 and procs[0].returncode != 0
  assert 'DEADLINE_EXCEEDED' in _read(paths[0])  # the coordinator waited 5 s for process 1 to register
  assert not os.path.exists(alone)  # it stopped before touching the workdir
  assert ended[1] - killed < 60 and procs[1].returncode != 0
  err = _read(paths[1])
  assert 'finished at step' not in err and ('heartbeat' in err or 'Gloo' in err), err[-3000:]


def test_sigterm_to_one_process_stops_both_at_the_same_step(runs, tmp_path):
  """SIGTERM reaches process 1 only: both processes finish the same step, save it, print the same line and exit
  with 143; resumed in two processes, the run ends with the parameters of the uninterrupted two-process run."""
  workdir, port = str(tmp_path / 'term'), portpicker.pick_unused_port()
  shutil.copytree(runs['two'][0], workdir)
  for name in os.listdir(os.path.join(workdir, 'checkpoints')):  # resume from step 10 (the run stops after it)
    if name != '10':
      shutil.rmtree(os.path.join(workdir, 'checkpoints', name))
  procs, logs = [], []
  try:
    for rank in range(2):
      dist = ['--coordinator', f'127.0.0.1:{port}', '--num-processes', '2', '--process-id', str(rank)]
      logs.append(open(f'{workdir}-{rank}.log', 'w+', encoding='utf-8'))
      procs.append(subprocess.Popen(_command(workdir, 20, *dist), cwd=ROOT, stdout=subprocess.DEVNULL,
                                    stderr=logs[-1]))
    deadline = time.monotonic() + TIMEOUT
    while 'model:' not in _read(logs[1].name):  # set up: training starts
      assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, 'training never started'
      time.sleep(0.02)
    procs[1].send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=TIMEOUT) for p in procs]
  finally:
    texts = _reap(procs, logs)
  stopped = [re.findall(r'stopped: SIGTERM at step (\d+): checkpoint saved', text) for text in texts]
  assert codes == [143, 143] and len(stopped[0]) == 1 and stopped[0] == stopped[1], texts[0][-2000:] + texts[1]
  step = int(stopped[0][0])
  assert 10 < step < 20 and experiments.info(workdir, 'latest')['step'] == step
  [results] = _run_all((workdir, 20, 2))
  assert [code for code, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
  assert f'resuming from the checkpoint at step {step}' in results[0][1]
  assert _finished(results[0][1], 20) == _finished(runs['two'][1][0][1], 20)
