"""Attention heatmaps: PNG files of the expected size, from hand-made weights and from a (random) model, and as
TensorBoard images; training curves from metrics.jsonl (`plot-metrics`)."""

import collections
import io
import json
import os
import struct

import jax
import numpy as np
import pytest
from PIL import Image

from seq2seq_jax import config
from seq2seq_jax.data.vocab import Vocab
from seq2seq_jax.decoding import Predictor
from seq2seq_jax.evaluation import curves, plotting
from seq2seq_jax.model import seq2seq
from seq2seq_jax.training import train
from tests.cli_helpers import one_error_line, run_main

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


def _events(folder):
  """Every event of the TensorBoard files in `folder` (TFRecord framing: length, its CRC, the event, its CRC)."""
  from tensorboardX.proto import event_pb2
  events = []
  for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name), 'rb') as f:
      data = f.read()
    at = 0
    while at < len(data):
      (size,) = struct.unpack('<Q', data[at:at + 8])
      events.append(event_pb2.Event.FromString(data[at + 12:at + 12 + size]))
      at += 12 + size + 4
  return events


def test_attention_heatmaps_of_each_evaluation_are_tensorboard_images_too(tmp_path):
  workdir = str(tmp_path / 'run')
  cfg = config.load_config(os.path.join(ROOT, 'configs/reverse.py'), [
      'data.min_len=3', 'data.max_len=5', 'data.num_train=64', 'data.num_eval=8', 'data.batch_size=8',
      'model.embed_size=8', 'model.encoder_size=8', 'model.decoder_size=16', 'model.attention_size=8',
      'train.num_steps=4', 'train.eval_every=2', 'train.log_every=2', 'train.attention_plots=2',
      'train.eval_examples=8'])
  train.train(cfg, workdir, log=lambda m: None)
  images = {(e.step, v.tag): v.image for e in _events(os.path.join(workdir, 'tensorboard'))
            for v in e.summary.value if v.HasField('image')}
  assert sorted(images) == [(2, 'attention/1'), (2, 'attention/2'), (4, 'attention/1'), (4, 'attention/2')]
  for (step, tag), image in images.items():
    png = Image.open(os.path.join(workdir, 'attention', f'step-{step}-{tag.split("/")[1]}.png'))
    shown = Image.open(io.BytesIO(image.encoded_image_string))
    assert (image.width, image.height) == png.size == shown.size
    np.testing.assert_array_equal(np.asarray(shown.convert('RGB')), np.asarray(png.convert('RGB')))


def _write_metrics(path, rows):
  with open(path, 'w', encoding='utf-8') as f:
    f.write(''.join(json.dumps(r) + '\n' for r in rows))


METRICS = [{'step': 2, 'kind': 'train', 'loss': 3.0, 'lr': 0.1}, {'step': 4, 'kind': 'train', 'loss': 2.5},
           {'step': 4, 'kind': 'validation', 'wer': 80.0, 'best_wer': 80.0, 'best_step': 4},
           {'step': 6, 'kind': 'train', 'loss': 2.0},
           {'step': 8, 'kind': 'train', 'loss': 1.2},
           {'step': 8, 'kind': 'validation', 'wer': 85.0, 'best_wer': 80.0, 'best_step': 4},
           {'step': 8, 'kind': 'plateau', 'lr_scale': 0.5},
           {'step': 8, 'kind': 'early_stop', 'best_step': 4, 'best_wer': 80.0}]


def test_plot_metrics_writes_a_png_of_the_curves(tmp_path, capsys):
  _write_metrics(tmp_path / 'metrics.jsonl', METRICS)
  code, out, err = run_main(capsys, 'plot-metrics', '--workdir', str(tmp_path))
  assert code == 0, err
  assert out.strip() == str(tmp_path / 'metrics.png')
  image = Image.open(tmp_path / 'metrics.png')
  assert image.format == 'PNG' and image.size == (800, 600)
  assert len(np.unique(np.asarray(image.convert('L')))) > 10  # not blank
  code, out, err = run_main(capsys, 'plot-metrics', '--workdir', str(tmp_path), '--output',
                            str(tmp_path / 'sub' / 'curves.png'))
  assert code == 0 and Image.open(tmp_path / 'sub' / 'curves.png').size == (800, 600), err
  # Training rows only (no evaluation yet): one panel.
  _write_metrics(tmp_path / 'metrics.jsonl', METRICS[:2])
  assert curves.write_png(str(tmp_path / 'metrics.jsonl'), str(tmp_path / 'loss.png')).endswith('loss.png')
  assert curves.task_metric(METRICS) == 'wer' and curves.task_metric(METRICS[:2]) is None


@pytest.mark.parametrize('line, message', [
    ('{"step": 6, "kind": "train", "loss"', 'not a JSON line ('),
    ('[1, 2]', 'not a JSON object'),
    ('{"kind": "train", "loss": 1.0}', 'a row needs an integer "step" and a "kind"'),
    ('{"step": "6", "kind": "train", "loss": 1.0}', 'a row needs an integer "step" and a "kind"'),
    ('{"step": 6, "kind": "train", "loss": "low"}', 'a train row without a numeric "loss"'),
    ('{"step": 6, "kind": "validation", "wer": null, "best_wer": 80.0, "best_step": 4}',
     'a validation row whose "wer" is not a number'),
])
def test_a_malformed_metrics_file_is_one_line_naming_file_and_line(line, message, tmp_path, capsys):
  path = tmp_path / 'metrics.jsonl'
  path.write_text(''.join(json.dumps(r) + '\n' for r in METRICS[:3]) + '\n' + line + '\n', encoding='utf-8')
  code, _, err = run_main(capsys, 'plot-metrics', '--workdir', str(tmp_path))
  one_error_line(code, err, f'{path}:5: {message}')
  assert not os.path.exists(tmp_path / 'metrics.png')


def test_plot_metrics_without_a_metrics_file_or_rows(tmp_path, capsys):
  code, _, err = run_main(capsys, 'plot-metrics', '--workdir', str(tmp_path / 'none'))
  one_error_line(code, err, f'{tmp_path / "none" / "metrics.jsonl"}: no such file')
  (tmp_path / 'metrics.jsonl').write_bytes(b'{"step": 1, "kind": "train", "loss": 1.0}\n\xff\n')
  code, _, err = run_main(capsys, 'plot-metrics', '--workdir', str(tmp_path))
  one_error_line(code, err, f'{tmp_path / "metrics.jsonl"}:2: not UTF-8 (byte 0)')
  (tmp_path / 'metrics.jsonl').write_text('{"step": 1, "kind": "info"}\n', encoding='utf-8')
  code, _, err = run_main(capsys, 'plot-metrics', '--workdir', str(tmp_path))
  one_error_line(code, err, f'{tmp_path / "metrics.jsonl"}: no train or validation rows to plot')
