"""Checkpoints: bitwise-exact resume after SIGKILL, half-written checkpoints, mismatches, NaN, info/average."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import pytest

from seq2seq_jax import config
from seq2seq_jax.runs import checkpoint
from seq2seq_jax.tools import experiments
from seq2seq_jax.training import steps, train
from seq2seq_jax.errors import CheckpointError, TrainingError
from seq2seq_jax.decoding.predictor import Predictor
from seq2seq_jax.data.vocab import Vocab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['data.task=reverse', 'data.min_len=5', 'data.max_len=5', 'data.num_train=300', 'data.num_eval=16',
        'data.batch_size=16', 'model.embed_size=8', 'model.encoder_size=8', 'model.decoder_size=16',
        'model.attention_size=8', 'model.dropout=0.1', 'train.teacher_forcing=linear', 'train.num_steps=40',
        'train.log_every=5', 'train.eval_every=10', 'train.checkpoint_every=5', 'train.keep_checkpoints=2']


def _cfg(*extra):
  return config.load_config(os.path.join(ROOT, 'configs/reverse.py'), TINY + list(extra))


def _args(workdir, *extra):
  return [sys.executable, '-m', 'seq2seq_jax', 'train', '--config', 'configs/reverse.py', '--workdir', workdir,
          *[f'--config.{o}' for o in TINY + list(extra)]]


def _final_fingerprint(workdir):
  return experiments.info(workdir, 'latest')['fingerprint']


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted run."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  train.train(_cfg(), workdir, log=lambda m: None)
  return workdir


def _steps_saved(workdir):
  folder = os.path.join(workdir, 'checkpoints')
  return sorted(int(d) for d in os.listdir(folder) if d.isdigit()) if os.path.isdir(folder) else []


def _kill_when(workdir, condition, extra=(), timeout=240):
  """Starts training and SIGKILLs it as soon as `condition()` holds (or when it ends by itself)."""
  proc = subprocess.Popen(_args(workdir, *extra), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + timeout
  while proc.poll() is None and time.time() < deadline and not condition():
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=30)


def test_sigkill_at_several_points_then_resume_is_bitwise_identical(reference, tmp_path):
  workdir = str(tmp_path / 'killed')
  # 1: before anything is saved; 2: just after the first checkpoint; 3, 4: in the middle of later saves.
  _kill_when(workdir, lambda: os.path.isfile(os.path.join(workdir, 'config.json')))
  _kill_when(workdir, lambda: _steps_saved(workdir) != [])
  for _ in range(2):
    folder = os.path.join(workdir, 'checkpoints')
    before = _steps_saved(workdir)
    _kill_when(workdir, lambda: any('tmp' in d for d in os.listdir(folder)) or _steps_saved(workdir)[-1:] != before[-1:])
  r = subprocess.run(_args(workdir), cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  assert 'resuming from the checkpoint at step' in r.stderr
  assert _final_fingerprint(workdir) == _final_fingerprint(reference)


def test_half_written_checkpoint_is_never_loaded(reference, tmp_path):
  workdir = str(tmp_path / 'half')
  shutil.copytree(reference, workdir)
  folder = os.path.join(workdir, 'checkpoints')
  # What a kill in the middle of saving step 45 leaves behind: orbax's temporary directory, never renamed.
  shutil.copytree(os.path.join(folder, '40'), os.path.join(folder, '45.orbax-checkpoint-tmp-1234567'))
  shutil.rmtree(os.path.join(folder, '45.orbax-checkpoint-tmp-1234567', 'train'))  # (an item still missing)
  assert 40 in _steps_saved(workdir) and 45 not in _steps_saved(workdir)
  assert experiments.info(workdir, 'latest')['step'] == 40
  result = train.train(_cfg('train.num_steps=45'), workdir, log=lambda m: None)
  assert result and 45 in _steps_saved(workdir)


def _tree_digest(folder):
  h = hashlib.sha256()
  for base, dirs, files in sorted(os.walk(folder)):
    dirs.sort()
    for name in sorted(files):
      with open(os.path.join(base, name), 'rb') as f:
        h.update(f'{os.path.relpath(os.path.join(base, name), folder)}:'.encode() + f.read())
  return h.hexdigest()


def test_checkpoint_that_does_not_fit_is_refused_and_nothing_changes(reference, tmp_path, capsys):
  from seq2seq_jax import cli
  workdir = str(tmp_path / 'mismatch')
  shutil.copytree(reference, workdir)
  digest = _tree_digest(workdir)
  # Another model size on the command line: a different run.
  with pytest.raises(CheckpointError, match='model.decoder_size=16 there, 32 now'):
    train.train(_cfg('model.decoder_size=32'), workdir, log=lambda m: None)
  # A config.json edited to other shapes: the checkpoint does not fit.
  cfg_path = os.path.join(workdir, 'config.json')
  text = open(cfg_path).read()
  with open(cfg_path, 'w') as f:
    f.write(text.replace('"decoder_size": 16', '"decoder_size": 24'))
  assert cli.main(['eval', '--workdir', workdir, '--split', 'validation']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: ') and 'does not fit this config' in err and len(err.splitlines()) == 1
  with open(cfg_path, 'w') as f:
    f.write(text)
  # Another target vocabulary (two symbols swapped): resume refuses it.
  vocab_path = os.path.join(workdir, 'vocab_target.json')
  vocab = open(vocab_path).read()
  swapped = Vocab.load(vocab_path)
  swapped.symbols[4], swapped.symbols[5] = swapped.symbols[5], swapped.symbols[4]
  Vocab(swapped.symbols[4:], swapped.tokenizer).save(vocab_path)
  with pytest.raises(CheckpointError, match='was trained with another target vocabulary'):
    train.train(_cfg('train.num_steps=50'), workdir, log=lambda m: None)
  with open(vocab_path, 'w') as f:
    f.write(vocab)
  assert _tree_digest(workdir) == digest


def _poison_at(monkeypatch, bad_step):
  """Makes the loss NaN at 1-based step `bad_step` (the weights of that batch become NaN)."""
  original = steps.train_step

  def poisoned(state, batch, *args, **kw):
    batch = dict(batch, weights=batch['weights'] * jnp.where(state.step + 1 == bad_step, jnp.nan, 1.0))
    return original(state, batch, *args, **kw)

  monkeypatch.setattr(steps, 'train_step', poisoned)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
  workdir = str(tmp_path / 'nan')
  _poison_at(monkeypatch, 13)
  with pytest.raises(TrainingError, match='non-finite loss or gradient at step 13'):
    train.train(_cfg(), workdir, log=lambda m: None)
  assert _steps_saved(workdir) == [5, 10]
  assert Predictor.load(workdir, 'latest').predict(['abcde'])  # still loadable


def test_nan_loss_can_be_skipped(tmp_path, monkeypatch):
  workdir = str(tmp_path / 'skip')
  _poison_at(monkeypatch, 13)
  train.train(_cfg('train.on_nonfinite=skip', 'train.num_steps=15'), workdir, log=lambda m: None)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [r for r in map(json.loads, f) if r['kind'] == 'train']
  assert [r['skipped_updates'] for r in rows] == [0, 0, 1]
  assert checkpoint.fingerprint(Predictor.load(workdir, 'latest').params)


def test_info_average_and_step_choice(reference):
  info = experiments.info(reference, 'latest')
  assert info['step'] == 40 and info['saved_steps'][-2:] == [35, 40] and len(info['fingerprint']) == 16
  best = experiments.info(reference)  # default: best by validation exact match
  assert best['step'] == info['best']['step']
  assert info['best']['exact_match'] == max(
      experiments.info(reference, str(s))['validation'].get('exact_match', -1) for s in info['saved_steps'])
  averaged = experiments.average(reference, 2)
  assert averaged['averaged_from'] == [35, 40]
  assert experiments.info(reference, 'averaged')['fingerprint'] == averaged['fingerprint'] != info['fingerprint']
  with pytest.raises(CheckpointError, match='--last 9 but'):
    experiments.average(reference, 9)
  with pytest.raises(CheckpointError, match="no checkpoint at step '7'"):
    experiments.info(reference, '7')
