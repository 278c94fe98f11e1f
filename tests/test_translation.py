"""Tests for TFDS translation data (seq2seq_jax.data.translation) and SentencePiece vocabularies (subwords).

No network: the real datasets are replaced by `tfds.testing.mock_data` (random strings from the features
spec), and the array_record path is exercised with a small builder defined here and prepared for real.
"""

import importlib.util
import sys

import pytest
import requests
import sentencepiece as spm
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking

from seq2seq_jax.config import default_config
from seq2seq_jax.data import sources, subwords, translation
from seq2seq_jax.errors import ConfigError, DataError
from seq2seq_jax.data.vocab import SPECIALS, Vocab

NUM_MOCK = 12
TEXTS = [
    'the cat sat on the mat', 'a dog ran in the park', 'the cats and the dogs are friends',
    'she reads a book every night', 'we went to the market on sunday', 'the weather is nice today',
    'he plays the guitar in a band', 'they are learning to translate sentences', 'this is a small test',
    'the park is near the market',
] * 3


def _getitems(record_keys, generator, serialized=False):
  del serialized  # the RAW_BYTES generator already serializes
  return [generator[k] for k in record_keys]


@pytest.fixture
def mock_tfds(monkeypatch):
  """Random examples for any dataset. tfds 4.9.10's mock sets `__getitems__` (the bulk read) on a MagicMock as a
  plain attribute, so it is called without `self`; the replacement takes the keys only."""
  monkeypatch.setattr(mocking, '_getitems', _getitems)
  with tfds.testing.mock_data(num_examples=NUM_MOCK, policy=tfds.testing.MockPolicy.USE_CODE):
    yield


def _text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


@pytest.mark.parametrize('name, source, target', [
    ('ted_hrlr_translate/pt_to_en', 'pt', 'en'), ('wmt14_translate/de-en', 'de', 'en')])
def test_load_translation_gives_str_pairs_in_the_right_languages(mock_tfds, tmp_path, name, source, target):
  pairs = translation.load_translation(name, 'train', '', '', str(tmp_path))
  assert len(pairs) == NUM_MOCK
  assert all(isinstance(s, str) and isinstance(t, str) and s and t for s, t in pairs)
  reference = tfds.data_source(name, split='train', data_dir=str(tmp_path))
  assert pairs == [(_text(reference[i][source]).strip(), _text(reference[i][target]).strip()) for i in range(NUM_MOCK)]
  swapped = translation.load_translation(name, 'test', target, source, str(tmp_path))
  assert swapped == [(t, s) for s, t in pairs]
  assert translation.load_translation(name, 'test', target, '', str(tmp_path)) == swapped
  assert translation.load_translation(name, 'test', '', source, str(tmp_path)) == swapped
  assert importlib.util.find_spec('tensorflow') is None and 'tensorflow' not in sys.modules


def test_default_keys_follow_the_config_name(tmp_path):
  for name, keys in [('ted_hrlr_translate/pt_to_en', ('pt', 'en')), ('ted_hrlr_translate/ru_to_en', ('ru', 'en')),
                     ('wmt14_translate/de-en', ('de', 'en')), ('wmt14_translate/fr-en', ('fr', 'en'))]:
    assert translation.default_keys(tfds.builder(name, data_dir=str(tmp_path))) == keys


def test_bad_names_and_keys_are_config_errors(mock_tfds, tmp_path):
  with pytest.raises(ConfigError, match='data.tfds_name'):
    translation.load_translation('no_such_dataset/xx', 'train', '', '', str(tmp_path))
  with pytest.raises(ConfigError, match="data.tfds_source_key='xx'"):
    translation.load_translation('ted_hrlr_translate/pt_to_en', 'train', 'xx', 'en', str(tmp_path))


def test_unprepared_dataset_without_network_is_a_one_line_data_error(tmp_path, monkeypatch):
  def offline(self, *args, **kwargs):
    raise requests.exceptions.ConnectionError("Failed to resolve 'www.phontron.com'")
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', offline)
  with pytest.raises(DataError) as info:
    translation.load_translation('ted_hrlr_translate/pt_to_en', 'train', '', '', str(tmp_path))
  message = str(info.value)
  assert '\n' not in message and str(tmp_path) in message and 'ConnectionError' in message
  assert 'python -m seq2seq_jax.data.translation ted_hrlr_translate/pt_to_en --data_dir' in message


class FakeTranslate(tfds.core.GeneratorBasedBuilder):
  """Tiny es->en dataset with a `dev` split, prepared for real (array_record, no network)."""

  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name='es_to_en')]

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.Translation(languages=('es', 'en')))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(20), 'dev': self._generate_examples(3),
            'test': self._generate_examples(4)}

  def _generate_examples(self, n):
    for i in range(n):
      yield i, {'es': f' hola mundo {i} ' if i else '', 'en': f'hello world {i}'}


def test_prepared_array_record_dataset(tmp_path):
  pairs = translation.load_translation('fake_translate/es_to_en', 'train', '', '', str(tmp_path))
  assert sorted(pairs) == sorted((f'hola mundo {i}', f'hello world {i}') for i in range(1, 20))  # empty one dropped
  assert len(translation.load_translation('fake_translate/es_to_en', 'validation', '', '', str(tmp_path))) == 2
  assert (tmp_path / 'fake_translate' / 'es_to_en' / '1.0.0' / 'dataset_info.json').exists()
  (tmp_path / 'half' / 'fake_translate' / 'es_to_en' / '1.0.0').mkdir(parents=True)
  with pytest.raises(DataError, match='incomplete fake_translate/es_to_en folder'):
    translation.load_translation('fake_translate/es_to_en', 'train', '', '', str(tmp_path / 'half'))


def test_train_sentencepiece_is_deterministic_and_round_trips():
  model = subwords.train_sentencepiece(TEXTS, 60)
  assert subwords.train_sentencepiece(iter(TEXTS), 60) == model
  vocab = Vocab.build(TEXTS, 'spm', spm_model=model)
  assert vocab.symbols[:4] == list(SPECIALS)
  for text in TEXTS[:10] + ['the dog reads']:
    ids = vocab.encode(text)
    assert ids and min(ids) >= len(SPECIALS)
    assert vocab.decode(ids) == text
  processor = spm.SentencePieceProcessor(model_proto=model)
  assert [processor.id_to_piece(i) for i in range(4)] == list(SPECIALS)


def test_sentencepiece_vocab_size_limits():
  model = subwords.train_sentencepiece(TEXTS, 5000)  # too large: as many pieces as the text supports
  assert 30 < spm.SentencePieceProcessor(model_proto=model).vocab_size() < 5000
  with pytest.raises(ConfigError, match='data.spm_vocab_size=10'):
    subwords.train_sentencepiece(TEXTS, 10)  # fewer than the characters
  with pytest.raises(DataError):
    subwords.train_sentencepiece(['', '  '], 100)


def _tfds_config(tmp_path):
  cfg = default_config()
  d = cfg.data
  d.task, d.tfds_name, d.data_dir = 'tfds', 'ted_hrlr_translate/pt_to_en', str(tmp_path)
  d.source_tokenizer = d.target_tokenizer = 'spm'
  d.spm_vocab_size = 30
  return cfg


def test_build_vocabs_with_spm_tokenizers(tmp_path):
  cfg = _tfds_config(tmp_path)
  cfg.data.target_tokenizer = 'char'
  pairs = [(t, t.upper(), f'x #{i}') for i, t in enumerate(TEXTS)]
  src, tgt = sources.build_vocabs(cfg, pairs)
  assert src.tokenizer == 'spm' and src.spm_model and tgt.tokenizer == 'char' and tgt.spm_model is None
  assert sources.build_vocabs(cfg, pairs) == (src, tgt)
  src.save(str(tmp_path / 'vocab_source.json'))
  assert (tmp_path / 'vocab_source.json.spm.model').exists()
  assert Vocab.load(str(tmp_path / 'vocab_source.json')) == src


def test_tfds_task_end_to_end(mock_tfds, tmp_path):
  cfg = _tfds_config(tmp_path)
  train = sources.load_pairs(cfg, 'train')
  assert len(train) == NUM_MOCK and train[0][2] == 'ted_hrlr_translate/pt_to_en/train #0'
  src_vocab, tgt_vocab = sources.build_vocabs(cfg, train)
  assert src_vocab.spm_model != tgt_vocab.spm_model
  examples, kept, report = sources.encode(cfg, train, src_vocab, tgt_vocab)
  assert len(examples) == len(kept) == NUM_MOCK and report['dropped_too_long'] == 0
  validation = sources.load_pairs(cfg, 'validation')
  assert len(sources.encode(cfg, validation, src_vocab, tgt_vocab)[0]) == NUM_MOCK
  cfg.data.tfds_name = ''
  with pytest.raises(ConfigError, match='data.tfds_name'):
    sources.load_pairs(cfg, 'train')
