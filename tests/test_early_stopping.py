"""Early stopping (train.patience) and reduce-on-plateau (train.plateau_patience, train.plateau_factor): the rules by
hand, the log and metrics.jsonl, and exact resume: a run stopped midway (after learning-rate reductions) and resumed
ends with the parameters and at the step of the uninterrupted run; a checkpoint from before these fields loads."""

import json
import os
import signal
import types

import pytest

from seq2seq_jax import config
from seq2seq_jax.errors import ConfigError, Interrupted
from seq2seq_jax.runs import checkpoint
from seq2seq_jax.tools import experiments
from seq2seq_jax.training import steps, stopping, train
from tests.cli_helpers import one_error_line, restore_target, run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny model whose validation exact match stays at 0 for these few steps: the first evaluation is the best,
# every later one is one without improvement, so the reductions and the stop fall on known steps.
TINY = ['data.task=reverse', 'data.min_len=5', 'data.max_len=5', 'data.num_train=300', 'data.num_eval=16',
        'data.batch_size=16', 'model.embed_size=8', 'model.encoder_size=8', 'model.decoder_size=16',
        'model.attention_size=8', 'model.dropout=0.1', 'train.teacher_forcing=linear', 'train.num_steps=40',
        'train.log_every=3', 'train.eval_every=3', 'train.checkpoint_every=100', 'train.attention_plots=0',
        'train.eval_examples=16']
RULES = ['train.patience=5', 'train.plateau_patience=2', 'train.plateau_factor=0.5']


def _cfg(*extra):
  return config.load_config(os.path.join(ROOT, 'configs/reverse.py'), TINY + list(extra))


def _rows(workdir, kinds=('validation', 'plateau', 'early_stop')):
  """The rows of metrics.jsonl of `kinds`, without the timings."""
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    return [r for r in map(json.loads, f) if r['kind'] in kinds]


def _t(patience=0, plateau_patience=0, plateau_factor=0.5):
  return types.SimpleNamespace(patience=patience, plateau_patience=plateau_patience, plateau_factor=plateau_factor)


def test_rules_by_hand():
  t = _t(patience=3, plateau_patience=2, plateau_factor=0.1)
  tracker, seen = stopping.initial(), []
  for step, wer in enumerate([30.0, 25.0, 25.0, 26.0, 24.0, 24.5, 24.0, 30.0], 1):
    events = stopping.judge(tracker, wer, 'min', t)
    tracker = stopping.advance(tracker, events, step, wer, t)
    seen.append((events, tracker['best_step'], tracker['bad_evals'], tracker['lr_scale']))
  I, R, S = stopping.IMPROVED, stopping.REDUCED, stopping.STOP
  assert seen == [(I, 1, 0, 1.0), (I, 2, 0, 1.0),
                  (0, 2, 1, 1.0),            # equal is no improvement
                  (R, 2, 2, 0.1),            # 2 without improvement: reduce, the plateau count restarts
                  (I, 5, 0, 0.1),
                  (0, 5, 1, 0.1), (R, 5, 2, 0.1 * 0.1),
                  (S, 5, 3, 0.1 * 0.1)]      # the 3rd: stop (the plateau count is at 1 after the reduction)
  assert stopping.stopped(tracker, t) and not stopping.stopped(tracker, _t(patience=4))
  assert not stopping.stopped(tracker, _t())  # patience 0: never
  assert stopping.judge(stopping.initial(), 0.0, 'max', t) == I
  assert stopping.judge({**stopping.initial((3, 50.0))}, 50.0, 'max', t) == 0
  # A checkpoint from before the tracker existed: the defaults, with the best known from metrics.jsonl.
  assert stopping.restore({'step': 9}, lambda: (6, 12.5)) == {**stopping.initial(), 'best_step': 6, 'best': 12.5}
  assert stopping.restore(None) == stopping.initial()


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The uninterrupted run with both rules on, and what it logged."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  lines = []
  train.train(_cfg(*RULES), workdir, log=lines.append)
  return workdir, lines


def test_reductions_and_the_stop_are_logged_and_the_best_checkpoint_is_kept(reference):
  workdir, lines = reference
  rows = _rows(workdir)
  # Evaluations at 3, 6, 9, ...: the best is the first; reductions after 2 and 4 without improvement; the stop
  # after 5, at step 18 of 40.
  assert [(r['step'], r['kind']) for r in rows] == [
      (3, 'validation'), (6, 'validation'), (9, 'validation'), (9, 'plateau'), (12, 'validation'),
      (15, 'validation'), (15, 'plateau'), (18, 'validation'), (18, 'early_stop')]
  assert {r['best_step'] for r in rows} == {3} and {r['best_exact_match'] for r in rows} == {0.0}
  assert [r['lr_scale'] for r in rows if r['kind'] == 'plateau'] == [0.5, 0.25]
  assert rows[-1]['evaluations_without_improvement'] == 5
  # The learning rate of the train rows is the schedule's times the scale.
  schedule = steps.learning_rate(_cfg(*RULES).train)
  for row in _rows(workdir, ('train',)):
    scale = 1.0 if row['step'] <= 9 else 0.5 if row['step'] <= 15 else 0.25
    assert row['lr'] == pytest.approx(float(schedule(row['step'] - 1)) * scale, rel=1e-6), row
  assert any(line.startswith('process 0: finished at step 18;') for line in lines), lines
  # The best step's checkpoint was saved when it was evaluated (checkpoint_every is 100) and kept; the last one is
  # the step of the stop.
  ckpt = checkpoint.Checkpointer(workdir, read_only=True)
  try:
    assert ckpt.all_steps() == [3, 18] and ckpt.meta(18)['tracker']['bad_evals'] == 5
  finally:
    ckpt.close()
  assert os.path.getsize(os.path.join(workdir, 'metrics.png')) > 1000


def test_the_stop_is_printed(tmp_path, capsys):
  code, out, err = run_main(capsys, 'train', '--config', 'configs/reverse.py', '--workdir', str(tmp_path / 'w'),
                            *[f'--config.{o}' for o in TINY + ['train.patience=2', 'train.num_steps=30']])
  assert code == 0, err
  wd = tmp_path / 'w'
  assert (f'step 9: early stopping: no better exact_match than 0 (step 3) in 2 evaluations (train.patience=2); '
          f'the best checkpoint is {wd}/checkpoints/3') in err, err
  assert json.loads(out)['exact_match'] == 0.0
  # The same command again: the run is over (nothing trained, nothing logged); a larger patience goes on.
  code, _, err = run_main(capsys, 'train', '--config', 'configs/reverse.py', '--workdir', str(wd),
                          *[f'--config.{o}' for o in TINY + ['train.patience=2', 'train.num_steps=30']])
  assert code == 0 and 'step 9: early stopping had ended this run' in err, err
  assert [(r['step'], r['kind']) for r in _rows(str(wd))][-2:] == [(9, 'validation'), (9, 'early_stop')]
  code, _, err = run_main(capsys, 'train', '--config', 'configs/reverse.py', '--workdir', str(wd),
                          *[f'--config.{o}' for o in TINY + ['train.patience=3', 'train.num_steps=30']])
  assert code == 0 and 'step 12: early stopping' in err, err
  assert [(r['step'], r['kind']) for r in _rows(str(wd)) if r['kind'] == 'early_stop'] == [(9, 'early_stop'),
                                                                                         (12, 'early_stop')]


class _StopAfter:
  """Stands in for signals.StopSignals: reports SIGTERM from the `steps`-th step on (the loop reads `signum`
  once per step), as a real SIGTERM would: the step finishes, a checkpoint is saved, Interrupted is raised."""

  def __init__(self, steps):
    self.left = steps

  def __call__(self, on_abort=None):
    return self

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return None

  @property
  def signum(self):
    self.left -= 1
    return signal.SIGTERM if self.left <= 0 else 0


def test_stopped_and_resumed_runs_end_like_the_uninterrupted_one(reference, tmp_path, monkeypatch):
  """Stops after steps 7 (between evaluations) and 16 (after both reductions, 4 evaluations without improvement):
  each resume must bring back the best value, both counters and the learning-rate scale, or the parameters (the
  scale) or the stop step (the counter) would differ."""
  workdir = str(tmp_path / 'chain')
  for stop_after, at in ((7, 7), (9, 16)):
    monkeypatch.setattr(train.signals, 'StopSignals', _StopAfter(stop_after))
    with pytest.raises(Interrupted, match=f'SIGTERM at step {at}: checkpoint saved'):
      train.train(_cfg(*RULES), workdir, log=lambda m: None)
  monkeypatch.undo()
  assert experiments.info(workdir, '16')['tracker'] == {'best_step': 3, 'best': 0.0, 'bad_evals': 4,
                                                         'plateau_evals': 0, 'lr_scale': 0.25}
  train.train(_cfg(*RULES), workdir, log=lambda m: None)
  assert experiments.info(workdir, 'latest')['fingerprint'] == experiments.info(reference[0], 'latest')['fingerprint']
  assert _rows(workdir) == _rows(reference[0])  # evaluations, reductions and the stop at the same steps


def test_a_checkpoint_without_the_tracker_resumes_with_the_defaults(tmp_path, capsys):
  """A checkpoint saved before these fields existed (its meta has no tracker): the run resumes with 0 evaluations
  without improvement and the learning rate unscaled, the best taken from metrics.jsonl."""
  workdir = str(tmp_path / 'old')
  train.train(_cfg('train.num_steps=9', 'train.checkpoint_every=9'), workdir, log=lambda m: None)
  ckpt = checkpoint.Checkpointer(workdir)
  try:
    saved = ckpt.restore(9, *restore_target(workdir))
    meta = {k: v for k, v in saved['meta'].items() if k != 'tracker'}
    ckpt.delete(9)
    ckpt.save(9, saved['params'], saved['train'], saved['data'], meta)
    assert 'tracker' not in ckpt.meta(9)
  finally:
    ckpt.close()
  code, _, err = run_main(capsys, 'train', '--config', 'configs/reverse.py', '--workdir', workdir,
                          *[f'--config.{o}' for o in TINY + ['train.patience=2']])
  assert code == 0, err
  # Evaluations at 3, 6, 9 before; after the resume 12 and 15 are the 1st and 2nd without improvement.
  assert 'step 15: early stopping: no better exact_match than 0 (step 3) in 2 evaluations' in err, err


@pytest.mark.parametrize('override, message', [
    ('train.patience=-1', 'config train.patience=-1 must be at least 0'),
    ('train.plateau_patience=-2', 'config train.plateau_patience=-2 must be at least 0'),
    ('train.plateau_factor=1.5', 'config train.plateau_factor=1.5 must be in (0, 1)'),
    ('train.plateau_factor=0', 'config train.plateau_factor=0.0 must be in (0, 1)'),
    ('train.patience=two', "config key 'train.patience' wants a int, got 'two'"),
])
def test_bad_values_are_one_line_errors(override, message, tmp_path, capsys):
  code, _, err = run_main(capsys, 'train', '--config', 'configs/reverse.py', '--workdir', str(tmp_path / 'w'),
                          f'--config.{override}')
  one_error_line(code, err, message)
  assert not os.path.exists(tmp_path / 'w')
  with pytest.raises(ConfigError):
    _cfg(override)
