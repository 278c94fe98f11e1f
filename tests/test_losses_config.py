"""Loss arithmetic and config handling (unknown keys, typed overrides, bad values)."""

import glob
import os

import numpy as np
import pytest

from seq2seq_jax import config
from seq2seq_jax.model import losses
from seq2seq_jax.training import steps
from seq2seq_jax.errors import ConfigError


def test_cross_entropy_averages_over_real_tokens_only():
  logits = np.log(np.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]], np.float32))
  targets = np.array([[0, 1, 2]])
  weights = np.array([[1.0, 1.0, 0.0]], np.float32)  # the third position is padding
  total, n = losses.cross_entropy(logits, targets, weights)
  assert float(n) == 2.0
  np.testing.assert_allclose(float(total), -np.log(0.5) - np.log(0.8), rtol=1e-6)
  # Label smoothing 0.1: 0.9 * nll + 0.1 * mean over the vocabulary of -log p.
  total_ls, _ = losses.cross_entropy(logits, targets, weights, label_smoothing=0.1)
  want = sum(0.9 * -np.log(p[t]) + 0.1 * -np.log(p).mean()
             for p, t in ((np.array([0.5, 0.25, 0.25]), 0), (np.array([0.1, 0.8, 0.1]), 1)))
  np.testing.assert_allclose(float(total_ls), want, rtol=1e-5)


def test_token_counts():
  logits = np.zeros((2, 2, 3), np.float32)
  logits[0, 0, 1] = logits[0, 1, 2] = logits[1, 0, 1] = 1.0  # argmax: [[1, 2], [1, 0]]
  counts = losses.token_counts(logits, np.array([[1, 2], [1, 2]]), np.array([[1, 1], [1, 1]], np.float32))
  assert {k: float(v) for k, v in counts.items()} == {'correct': 3.0, 'tokens': 4.0, 'seq_correct': 1.0,
                                                     'sequences': 2.0}


def test_load_config_and_overrides(tmp_path):
  cfg = config.load_config('configs/reverse.py', ['model.cell=lstm', 'model.encoder_size=32', 'train.learning_rate=1e-3',
                                                  'model.bidirectional=false', 'model.dropout=0'])
  assert (cfg.model.cell, cfg.model.encoder_size, cfg.train.learning_rate) == ('lstm', 32, 1e-3)
  assert cfg.model.bidirectional is False and cfg.model.dropout == 0.0


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('name', sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, 'configs/*.py'))))
def test_every_shipped_config_loads_and_validates(name):
  cfg = config.load_config(os.path.join(ROOT, 'configs', name))
  assert cfg.data.task in config.TASKS and cfg.train.num_steps > 0


def test_the_reports_g2p_config_is_pinned():
  """configs/g2p_cmudict_v1.py is the G2P default as the README's attention, ensemble and sequence-training
  tables measured it: the current default's data and sizes with additive attention for 8,800 steps."""
  now, then = (config.load_config(os.path.join(ROOT, 'configs', n)) for n in ('g2p_cmudict.py', 'g2p_cmudict_v1.py'))
  assert (then.model.attention, then.train.num_steps, then.train.eval_every) == ('additive', 8800, 2200)
  assert then.data == now.data and then.model.encoder_size == now.model.encoder_size == 256


@pytest.mark.parametrize('override, message', [
    ('model.hiden_size=3', "unknown config key 'model.hiden_size'"),
    ('modle.cell=gru', "unknown config key 'modle'"),
    ('model.encoder_size=big', "config key 'model.encoder_size' wants a int, got 'big'"),
    ('model.cell=rnn', "model.cell='rnn' is not one of gru, lstm"),
    ('model.dropout=1.5', 'model.dropout=1.5 must be in [0, 1)'),
    ('model.cell', 'is not of the form key=value'),
])
def test_bad_overrides_are_named(override, message):
  with pytest.raises(ConfigError, match=None) as e:
    config.load_config('configs/reverse.py', [override])
  assert message in str(e.value)


def test_unknown_key_in_config_file(tmp_path):
  path = tmp_path / 'bad.py'
  path.write_text('from seq2seq_jax.config import default_config\n'
                  'def get_config():\n  c = default_config()\n  c.train.num_step = 5\n  return c\n')
  with pytest.raises(ConfigError, match="unknown config key 'train.num_step'.*did you mean 'train.num_steps'"):
    config.load_config(str(path))


def test_teacher_forcing_schedules():
  t = config.default_config().train
  assert float(steps.teacher_forcing_ratio(t, 500)) == 1.0
  t.teacher_forcing, t.teacher_forcing_k, t.teacher_forcing_min = 'linear', 1000.0, 0.2
  np.testing.assert_allclose(float(steps.teacher_forcing_ratio(t, 250)), 0.75)
  np.testing.assert_allclose(float(steps.teacher_forcing_ratio(t, 5000)), 0.2)
  t.teacher_forcing = 'exponential'
  np.testing.assert_allclose(float(steps.teacher_forcing_ratio(t, 1000)), np.exp(-1), rtol=1e-6)
  t.teacher_forcing, t.teacher_forcing_k = 'inverse_sigmoid', 10.0
  np.testing.assert_allclose(float(steps.teacher_forcing_ratio(t, 20)), 10 / (10 + np.exp(2)), rtol=1e-6)
  assert steps.uses_sampling(t)
