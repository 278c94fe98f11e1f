"""Faults that preemptible machines and shared file systems bring (issue 16): damaged checkpoints, kills and
signals at random moments, two runs on one workdir, readers during training, a full or read-only disk.

One tiny uninterrupted run (`reference`) is trained once; every test works on copies of it or on new workdirs
trained with the same config, whose compiled programs come from the session's XLA cache. Every subprocess has
a timeout and is killed in a `finally`, so nothing here can hang CI.
"""

import collections
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from seq2seq_jax import config
from seq2seq_jax.decoding.predictor import Predictor
from seq2seq_jax.errors import CheckpointDamaged
from seq2seq_jax.runs import checkpoint, integrity
from seq2seq_jax.tools import experiments
from seq2seq_jax.training import train
from tests.cli_helpers import one_error_line, restore_target, run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['data.task=reverse', 'data.min_len=5', 'data.max_len=5', 'data.num_train=300', 'data.num_eval=16',
        'data.batch_size=16', 'model.embed_size=8', 'model.encoder_size=8', 'model.decoder_size=16',
        'model.attention_size=8', 'model.dropout=0.1', 'train.teacher_forcing=linear', 'train.num_steps=30',
        'train.log_every=5', 'train.eval_every=10', 'train.checkpoint_every=5', 'train.keep_checkpoints=2',
        'train.attention_plots=0', 'train.eval_examples=16']
# Keys that may change on resume and do not change the parameters: a slower run, saving (and evaluating) at
# every step, gives kills and signals many moments to land in.
BUSY = ['train.checkpoint_every=1', 'train.eval_every=1', 'train.keep_checkpoints=1']
TIMEOUT = 240
# Reads of deliberately damaged files leave orbax coroutines that fail again when they are closed; the commands
# drop those leftovers (runs/integrity.quiet_background_errors), but pytest replaces that hook during each test.
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')


def _argv(workdir, *extra):
  return ['train', '--config', 'configs/reverse.py', '--workdir', workdir,
          *[f'--config.{o}' for o in TINY + list(extra)]]


def _command(workdir, *extra):
  return [sys.executable, '-m', 'seq2seq_jax', *_argv(workdir, *extra)]


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('reference'))
  train.train(config.load_config(os.path.join(ROOT, 'configs/reverse.py'), TINY), workdir, log=lambda m: None)
  return workdir


def _fingerprint(workdir):
  return experiments.info(workdir, 'latest')['fingerprint']


def _steps(workdir):
  folder = os.path.join(workdir, 'checkpoints')
  return sorted(int(d) for d in os.listdir(folder) if d.isdigit()) if os.path.isdir(folder) else []


def _copy(reference, tmp_path, name):
  shutil.copytree(reference, tmp_path / name)
  return str(tmp_path / name)


def _largest_file(folder):
  files = [os.path.join(base, f) for base, _, names in os.walk(folder) for f in names]
  return max(files, key=os.path.getsize)


def _restored(out):  # what a restore gave, comparable with ==
  return {k: integrity.array_checksums(v) if k in ('params', 'train') else v for k, v in out.items()}


def test_flipped_cut_or_deleted_bytes_never_load_silently(reference, tmp_path):
  """60 random changes to one file of a saved step (a flipped byte, a cut, a deletion; the file uniform over the
  step's files, so metadata is hit as often as data): every restore, for inference and for training, raises
  CheckpointDamaged or reads exactly the saved values."""
  like_params, like_train = restore_target(reference)
  step = _steps(reference)[-1]
  source = os.path.join(reference, 'checkpoints', str(step))
  ckpt = checkpoint.Checkpointer(reference, read_only=True)
  modes = {'inference': None, 'training': like_train}
  want = {mode: _restored(ckpt.restore(step, like_params, like)) for mode, like in modes.items()}
  ckpt.close()
  rng, outcomes = random.Random(16), collections.Counter()
  for trial in range(60):
    workdir = str(tmp_path / f'trial{trial}')  # a new path each time: no file-system or tensorstore cache
    folder = os.path.join(workdir, 'checkpoints', str(step))
    shutil.copytree(source, folder)
    victim = rng.choice(sorted(os.path.join(b, f) for b, _, names in os.walk(folder) for f in names))
    with open(victim, 'rb') as f:
      data = bytearray(f.read())
    kind = rng.choices(['flip', 'cut', 'delete'], [6, 3, 1])[0] if data else 'delete'
    if kind == 'flip':
      data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    elif kind == 'cut':
      del data[rng.randrange(len(data)):]
    if kind == 'delete':
      os.remove(victim)
    else:
      with open(victim, 'wb') as f:
        f.write(data)
    for mode, like in modes.items():
      ckpt = checkpoint.Checkpointer(workdir, read_only=True)
      try:
        got = _restored(ckpt.restore(step, like_params, like))
      except CheckpointDamaged as e:
        assert 'damaged checkpoint' in str(e) and '\n' not in str(e)
        outcomes['damaged'] += 1
        continue
      finally:
        ckpt.close()
      assert got == want[mode], f'trial {trial}, {mode}: {kind} of {os.path.relpath(victim, folder)} read other values'
      outcomes['same values'] += 1
  # About a third of the changes matter (the others hit files a restore does not read, e.g. commit markers, or in
  # inference the optimizer state): those are all reported as damage.
  assert outcomes['damaged'] >= 20, outcomes


def test_resume_moves_damaged_checkpoints_aside_and_ends_bitwise_equal(reference, tmp_path, capsys):
  workdir = _copy(reference, tmp_path, 'damaged')
  folder = os.path.join(workdir, 'checkpoints')
  *_, good, no_meta, cut = _steps(workdir)
  os.truncate(_largest_file(os.path.join(folder, str(cut), 'train')), 100)  # (flipped bytes: the test above)
  shutil.rmtree(os.path.join(folder, str(no_meta), 'meta'))
  code, _, err = run_main(capsys, *_argv(workdir))
  assert code == 0, err
  warnings = [line for line in err.splitlines() if line.startswith('warning: ')]
  assert len(warnings) == 2, err
  assert f'{folder}/{cut}: damaged checkpoint (' in warnings[0]
  assert f'{folder}/{no_meta}: damaged checkpoint (its meta item is missing)' in warnings[1]
  assert f'resuming from the checkpoint at step {good}' in err and 'Traceback' not in err
  assert os.path.isdir(f'{folder}/{cut}.damaged') and os.path.isdir(f'{folder}/{no_meta}.damaged')  # kept
  assert _fingerprint(workdir) == _fingerprint(reference)


def test_inference_on_damaged_files_is_one_line_naming_the_damage(reference, tmp_path, capsys):
  workdir = _copy(reference, tmp_path, 'bad')
  *_, no_meta, latest = _steps(workdir)
  os.truncate(_largest_file(os.path.join(workdir, 'checkpoints', str(latest), 'params')), 100)
  shutil.rmtree(os.path.join(workdir, 'checkpoints', str(no_meta), 'meta'))
  (tmp_path / 'in.txt').write_text('abcde\n')
  for argv in (['info'], ['eval', '--split', 'validation'], ['predict', '--input', str(tmp_path / 'in.txt')]):
    code, _, err = run_main(capsys, *argv, '--workdir', workdir, '--step', 'latest')
    one_error_line(code, err, f'checkpoints/{latest}: damaged checkpoint (cannot read it: OUT_OF_RANGE')
  code, _, err = run_main(capsys, 'info', '--workdir', workdir, '--step', str(no_meta))
  one_error_line(code, err, f'checkpoints/{no_meta}: damaged checkpoint (its meta item is missing)')
  # Orbax's threads printed stray tracebacks after the error line in a real process: one line only.
  r = subprocess.run([sys.executable, '-m', 'seq2seq_jax', 'info', '--workdir', workdir, '--step', 'latest'],
                     cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
  one_error_line(r.returncode, r.stderr, 'damaged checkpoint')
  config_json = os.path.join(workdir, 'config.json')
  with open(config_json, 'r+', encoding='utf-8') as f:
    f.truncate(len(f.read()) // 2)
  code, _, err = run_main(capsys, 'info', '--workdir', workdir)
  one_error_line(code, err, f'{config_json}:', 'damaged (not valid JSON')


def _wait_for(condition, proc, timeout=TIMEOUT, every=0.005):
  deadline = time.time() + timeout
  while proc.poll() is None and time.time() < deadline and not condition():
    time.sleep(every)
  return proc.poll() is None


def test_second_run_is_refused_and_readers_see_complete_checkpoints(reference, tmp_path, capsys):
  """While a run saves and deletes a checkpoint at every step: a second `train` on the workdir is refused in
  one line naming the first, and `info` / `predict` / `eval` read it throughout without an error."""
  workdir = _copy(reference, tmp_path, 'busy')
  for step in _steps(workdir)[1:]:  # the run resumes from step 10
    shutil.rmtree(os.path.join(workdir, 'checkpoints', str(step)))
  proc = subprocess.Popen(_command(workdir, *BUSY), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
  reads = collections.Counter()
  try:
    _wait_for(lambda: _steps(workdir) != [10], proc)
    code, _, err = run_main(capsys, *_argv(workdir, *BUSY))
    one_error_line(code, err, f'{workdir} is being trained by PID {proc.pid} on {socket.gethostname()}')
    while proc.poll() is None:
      info = experiments.info(workdir, 'latest')
      reads['info'] += info['step'] < 30
      reads['predict'] += len(Predictor.load(workdir, 'latest').predict(['abcde'])) == 1
      if not reads['eval']:
        code, out, err = run_main(capsys, 'eval', '--workdir', workdir, '--split', 'validation', '--step', 'latest')
        assert code == 0 and json.loads(out)['num_items'] == 16, err
        reads['eval'] += 1
    _, err = proc.communicate(timeout=TIMEOUT)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert proc.returncode == 0, err[-3000:]
  assert reads['info'] >= 2 and reads['predict'] >= 2, reads  # some reads while steps were saved and deleted
  assert _fingerprint(workdir) == _fingerprint(reference)
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    rows = [(r['step'], r['kind']) for r in map(json.loads, f)]
  assert len(rows) == len(set(rows)) == 3 + 4 + 20  # one writer, no row twice: up to step 10, then 11-30


@pytest.mark.parametrize('between', ['_read_json_items', 'check_structure'])
def test_a_step_deleted_between_two_looks_of_a_reader_is_gone_not_damaged(reference, tmp_path, monkeypatch,
                                                                          between):
  """The interleaving the test above meets by chance, made certain: the owner deletes the step after the reader
  has checked its meta / checksums (or its shapes) and before it looks for the other items. The reader must
  get CheckpointGone (and so choose again), never CheckpointDamaged, and the step must not be quarantined."""
  workdir = _copy(reference, tmp_path, 'racy')
  step = _steps(workdir)[-1]
  like_params, _ = restore_target(workdir)
  owner, reader = checkpoint.Checkpointer(workdir), checkpoint.Checkpointer(workdir, read_only=True)
  target = checkpoint.Checkpointer if between == '_read_json_items' else integrity
  original = getattr(target, between)

  def then_delete(*args, **kw):
    out = original(*args, **kw)
    owner.delete(step)
    return out

  monkeypatch.setattr(target, between, then_delete)
  try:
    with pytest.raises(checkpoint.CheckpointGone, match=f'{step}: no longer exists'):
      reader.restore(step, like_params)
  finally:
    reader.close()
    owner.close()
  assert step not in _steps(workdir)
  assert not [d for d in os.listdir(os.path.join(workdir, 'checkpoints')) if checkpoint.DAMAGED in d]


def _action(workdir, action, rng, log_path):
  """One start of training on `workdir`, ended as `action` says; returns (exit status, stderr)."""
  folder = os.path.join(workdir, 'checkpoints')
  before = set(_steps(workdir))
  with open(log_path, 'w+', encoding='utf-8') as log:
    proc = subprocess.Popen(_command(workdir, *BUSY), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    try:
      if action == 'kill at a random moment':  # start-up, data, restore, compilation, steps, saves
        _wait_for(lambda: False, proc, timeout=rng.uniform(0.5, 5.0))
      elif action == 'kill inside a save':
        _wait_for(lambda: any(checkpoint.TMP_MARK in n or n.startswith(checkpoint.DELETING)
                              for n in (os.listdir(folder) if os.path.isdir(folder) else [])), proc)
      else:  # signals: once this start has saved a step of its own, i.e. inside the training loop
        _wait_for(lambda: set(_steps(workdir)) - before, proc)
        time.sleep(rng.uniform(0.0, 0.2))
      for signum in {'SIGTERM': [signal.SIGTERM], 'SIGINT': [signal.SIGINT], 'SIGINT twice': [signal.SIGINT] * 2
                     }.get(action, [signal.SIGKILL]):
        proc.send_signal(signum)
        time.sleep(0.02)
      proc.wait(timeout=TIMEOUT)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.seek(0)
    return proc.returncode, log.read()


def test_kills_and_signals_at_random_moments_then_resume_is_bitwise_equal(reference, tmp_path):
  """Training is ended again and again (SIGKILL at random moments and inside saves, SIGTERM, SIGINT, a double
  SIGINT), each start resuming the last; it ends with the parameters of the uninterrupted run."""
  workdir, rng = str(tmp_path / 'chain'), random.Random(1616)
  plan = ['SIGTERM', 'kill at a random moment', 'SIGINT', 'kill inside a save', 'SIGINT twice',
          'kill at a random moment']
  seen = []
  for i, action in enumerate(plan):
    code, err = _action(workdir, action, rng, str(tmp_path / f'{i}.log'))
    seen.append((action, code))
    if code == 0:
      break  # the run finished before the action came
    if action in ('SIGTERM', 'SIGINT'):
      last = err.strip().splitlines()[-1]
      step = _steps(workdir)[-1]
      assert code == 128 + getattr(signal, action) and 'Traceback' not in err, err[-3000:]
      assert last == (f'stopped: {action} at step {step}: checkpoint saved in {workdir}/checkpoints/{step}; '
                      f'the same command resumes from it'), last
    elif action == 'SIGINT twice':  # at once, or (when the first was handled already) after saving
      assert code == 130 and ('aborted: a second Ctrl-C' in err or 'stopped: SIGINT' in err), err
    else:
      assert code == -signal.SIGKILL, err[-3000:]
  assert [a for a, _ in seen[:4]] == plan[:4] and all(code for _, code in seen[:4]), seen
  r = subprocess.run(_command(workdir, *BUSY), cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
  assert r.returncode == 0, r.stderr[-3000:]
  assert _fingerprint(workdir) == _fingerprint(reference)
  assert not [n for n in os.listdir(os.path.join(workdir, 'checkpoints')) if not n.isdigit()]  # no leftovers
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    rows = [(r['step'], r['kind']) for r in map(json.loads, f)]
  assert len(rows) == len(set(rows)) and {s for s, k in rows if k == 'validation'} == set(range(1, 31))


def _namespace_ok():
  try:
    return subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'true'], capture_output=True,
                          timeout=30).returncode == 0
  except (OSError, subprocess.SubprocessError):
    return False


needs_namespace = pytest.mark.skipif(not _namespace_ok(), reason='needs `unshare --user --mount` (a small tmpfs '
                                     'or a read-only bind mount without root)')


def _in_namespace(script, tmp_path):
  """Runs a shell script in a user and mount namespace of its own (its mounts vanish with it)."""
  path = tmp_path / 'script.sh'
  path.write_text('set -eu\n' + script)  # -e: nothing runs unless the mount worked
  return subprocess.run(['unshare', '--user', '--map-root-user', '--mount', 'bash', str(path)], cwd=ROOT,
                        capture_output=True, text=True, timeout=TIMEOUT)


@needs_namespace
def test_disk_full_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(reference, tmp_path):
  mnt, python = tmp_path / 'small', sys.executable
  mnt.mkdir()
  last = _steps(reference)[-1]
  r = _in_namespace(f'''
mount -t tmpfs -o size=8m tmpfs {mnt}
mountpoint -q {mnt}
cp -r {reference} {mnt}/wd
rm -r {mnt}/wd/checkpoints/{last}
dd if=/dev/zero of={mnt}/fill bs=1k count=$(( $(df -k --output=avail {mnt} | tail -1) - 48 )) 2>/dev/null || true
if {' '.join(_command(f'{mnt}/wd'))} 2> {tmp_path}/train.err; then echo 0; else echo $?; fi > {tmp_path}/train.code
ls -a {mnt}/wd/checkpoints > {tmp_path}/ls.txt
{python} -m seq2seq_jax info --workdir {mnt}/wd --step latest > {tmp_path}/info.json
''', tmp_path)
  assert r.returncode == 0, r.stderr[-3000:]
  err = (tmp_path / 'train.err').read_text()
  lines = [line for line in err.splitlines() if line.startswith('error')]
  assert (tmp_path / 'train.code').read_text().strip() == '2' and 'Traceback' not in err, err[-3000:]
  assert len(lines) == 1 and lines[0] == err.strip().splitlines()[-1], err[-3000:]
  assert lines[0].startswith(f'error: {mnt}/wd: no space left on its file system (') and ' free' in lines[0]
  assert f'while saving the checkpoint at step {last}; the checkpoint at step' in lines[0]
  listed = (tmp_path / 'ls.txt').read_text().split()
  assert str(last) not in listed and not [n for n in listed if 'tmp' in n], listed  # the partial save is gone
  assert json.loads((tmp_path / 'info.json').read_text())['step'] == _steps(reference)[-2]  # intact, verifies


@needs_namespace
def test_read_only_workdir_cannot_be_trained_but_can_be_read(reference, tmp_path):
  mnt, python = tmp_path / 'ro', sys.executable
  mnt.mkdir()
  copy = _copy(reference, tmp_path, 'copy')
  r = _in_namespace(f'''
mount --bind {copy} {mnt}
mount -o remount,ro,bind {mnt}
if {' '.join(_command(str(mnt)))} 2> {tmp_path}/train.err; then echo 0; else echo $?; fi > {tmp_path}/train.code
{python} -m seq2seq_jax info --workdir {mnt} --step latest > {tmp_path}/info.json
''', tmp_path)
  assert r.returncode == 0, r.stderr[-3000:]
  code, err = (tmp_path / 'train.code').read_text().strip(), (tmp_path / 'train.err').read_text()
  one_error_line(int(code), err, f'workdir {mnt}: {mnt} is on a read-only file system')
  assert json.loads((tmp_path / 'info.json').read_text())['step'] == _steps(reference)[-1]


def test_a_reader_that_goes_away_ends_the_command_in_one_line(reference, tmp_path):
  """`predict ... | head -1`: the reader closes stdout while predict still writes (30,000 JSON lines, more
  than a pipe holds); the command stops with one line on stderr and exit status 141, not a traceback."""
  words = tmp_path / 'words.txt'
  words.write_text('abcde\n' * 30000)
  proc = subprocess.Popen([sys.executable, '-m', 'seq2seq_jax', 'predict', '--workdir', reference, '--input',
                           str(words), '--format', 'jsonl'], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  try:
    first = proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=TIMEOUT)
  finally:
    proc.kill()
  assert first.strip(), first
  err = err.decode()
  assert proc.returncode == 141, err
  assert 'Traceback' not in err, err
  assert err.strip().splitlines()[-1] == 'stdout: closed by its reader (broken pipe); stopped writing', err
