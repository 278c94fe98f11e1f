"""Attention heatmaps: PNG files of the expected size, from hand-made weights and from a (random) model."""

import collections
import os

import jax
import numpy as np
import pytest
from PIL import Image

from seq2seq_jax import config
from seq2seq_jax.data.vocab import Vocab
from seq2seq_jax.decoding import Predictor
from seq2seq_jax.evaluation import plotting
from seq2seq_jax.model import seq2seq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_plot_attention_writes_a_png_of_the_expected_size(tmp_path):
  weights = np.eye(4, 5)[::-1] * 0.9 + 0.02
  path = plotting.plot_attention(weights, ['h', 'e', ' ', 'y', '</s>'], ['y', ' ', 'e', '</s>'],
                                 str(tmp_path / 'hand.png'), title='hand-made')
  assert os.path.getsize(path) > 1000
  image = Image.open(path)
  assert image.format == 'PNG' and image.size == plotting.image_size(5, 4)
  assert len(np.unique(np.asarray(image.convert('L')))) > 10  # not blank
  with pytest.raises(ValueError, match='attention of shape'):
    plotting.plot_attention(weights, ['a'], ['b'], str(tmp_path / 'bad.png'))


def test_long_sentences_are_capped():
  width, height = plotting.figure_size(1000, 3)
  assert width == plotting.MAX_IN and height == 2.5


def test_write_attention_pngs_decodes_each_source(tmp_path):
  cfg = config.load_config(os.path.join(ROOT, 'configs/reverse.py'), [
      'model.embed_size=8', 'model.encoder_size=8', 'model.decoder_size=16', 'model.attention_size=8'])
  vocab = Vocab.build(['abcdefgh'], 'char')
  model = seq2seq.build(cfg.model, len(vocab), len(vocab))
  params = model.init(jax.random.PRNGKey(0), np.ones((1, 3), np.int32), np.ones((1,), np.int32),
                      np.ones((1, 2), np.int32))['params']
  predictor = Predictor(cfg, params, vocab, vocab)
  sources = ['abc', 'hgfedcba', 'a#']  # '#' is not in the vocabulary: read as <unk>
  paths = plotting.write_attention_pngs(predictor, sources, str(tmp_path / 'eval'), 'step100')
  assert paths == [str(tmp_path / 'eval' / f'step100-{i}.png') for i in (1, 2, 3)]
  outputs = predictor.decode_ids([vocab.encode(s, unknown=collections.Counter()) for s in sources])
  for path, source, out in zip(paths, sources, outputs):
    assert Image.open(path).size == plotting.image_size(len(source) + 1, len(out['tokens']) + 1)
