"""Decoding options through the command line (in-process) on a tiny trained reverse model."""

import json
import os

import pytest
from PIL import Image

from seq2seq_jax import cli, config
from seq2seq_jax.evaluation import plotting
from seq2seq_jax.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INPUTS = ['abcd', 'hgfe', 'abcdef']
BEAM = ('--beam', '3', '--nbest', '3', '--alpha', '0.6')  # one setting (one compilation) for the n-best tests


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp('reverse_tiny'))
  cfg = config.load_config(os.path.join(ROOT, 'configs/reverse.py'), [
      'train.num_steps=150', 'train.eval_every=150', 'train.eval_examples=20', 'train.learning_rate=1e-2',
      'data.min_len=4', 'data.max_len=6', 'data.alphabet_size=8', 'data.num_train=2000', 'data.num_eval=20',
      'data.batch_size=32', 'model.embed_size=16', 'model.encoder_size=32', 'model.decoder_size=32',
      'model.attention_size=32', 'model.bidirectional=False', 'decode.batch_size=16'])
  train.train(cfg, folder, log=lambda m: None)
  return folder


@pytest.fixture(scope='module')
def input_file(tmp_path_factory):
  path = tmp_path_factory.mktemp('inputs') / 'input.txt'
  path.write_text('\n'.join(INPUTS) + '\n')
  return str(path)


def _run(capsys, *args) -> tuple[int, list[str], str]:
  capsys.readouterr()
  code = cli.main(list(args))
  out, err = capsys.readouterr()
  return code, out.splitlines(), err


def _predict(capsys, workdir, input_file, *flags) -> list[str]:
  code, lines, err = _run(capsys, 'predict', '--workdir', workdir, '--input', input_file, *flags)
  assert code == 0, err
  assert len(lines) == len(INPUTS)
  return lines


def test_predict_beam_nbest_jsonl(capsys, workdir, input_file):
  lines = _predict(capsys, workdir, input_file, *BEAM, '--format', 'jsonl')
  rows = [json.loads(line) for line in lines]
  assert [r['source'] for r in rows] == INPUTS
  assert [r['text'] for r in rows] == [s[::-1] for s in INPUTS]
  for r in rows:
    assert len(r['nbest']) == 3 and r['nbest'][0] == {'text': r['text'], 'score': r['score']}
    assert len({h['text'] for h in r['nbest']}) == 3
    assert [h['score'] for h in r['nbest']] == sorted((h['score'] for h in r['nbest']), reverse=True)
  one = [json.loads(line) for line in _predict(capsys, workdir, input_file, '--format', 'jsonl')]
  assert all(set(r) == {'source', 'text', 'score'} and r['score'] < 0 for r in one)


def test_predict_text_format(capsys, workdir, input_file):
  greedy = _predict(capsys, workdir, input_file)
  assert greedy == [s[::-1] for s in INPUTS]
  nbest = [line.split(' ||| ') for line in _predict(capsys, workdir, input_file, *BEAM)]
  assert all(len(h) == 3 and len(set(h)) == 3 for h in nbest)
  assert [h[0] for h in nbest] == greedy


def test_predict_sampling_is_seeded_and_batch_independent(capsys, workdir, input_file):
  def sample(*flags):
    return [json.loads(line) for line in _predict(capsys, workdir, input_file, '--sample', '--temperature', '3.0',
                                                  '--top-k', '4', '--format', 'jsonl', *flags)]
  first = sample('--seed', '3')
  assert sample('--seed', '3') == first
  one_by_one = sample('--seed', '3', '--batch-size', '1')  # each line keeps its own random stream
  assert [r['text'] for r in one_by_one] == [r['text'] for r in first]
  assert [r['score'] for r in one_by_one] == pytest.approx([r['score'] for r in first], rel=1e-5)
  assert [r['text'] for r in sample('--seed', '4')] != [r['text'] for r in first]


@pytest.mark.parametrize('flags,message', [
    (['--beam', '2', '--nbest', '3'], 'nbest (3) > beam (2)'),
    (['--sample', '--top-k', '0'], 'top-k must be >= 1'),
    (['--sample', '--temperature', '0'], 'temperature must be > 0'),
    (['--temperature', '0.5'], 'apply to sampling only'),
    (['--sample', '--beam', '2'], 'sampling takes no beam'),
])
def test_bad_flag_combinations_are_one_line_errors(capsys, flags, message):
  code, lines, err = _run(capsys, 'predict', '--workdir', 'no/such/dir', *flags)
  assert code == 2 and not lines
  assert err.startswith('error: ') and message in err and len(err.strip().splitlines()) == 1, err


def test_eval_with_beam(capsys, workdir):
  code, lines, err = _run(capsys, 'eval', '--workdir', workdir, '--split', 'test', '--beam', '3', '--alpha', '0.6')
  assert code == 0, err
  result = json.loads(lines[-1])
  assert result['split'] == 'test' and result['num_items'] == 20 and result['exact_match'] >= 90.0, result


def test_plot_attention_command(capsys, workdir, tmp_path):
  code, lines, err = _run(capsys, 'plot-attention', '--workdir', workdir, '--output', str(tmp_path / 'a.png'),
                          *INPUTS)
  assert code == 0, err
  assert lines == [str(tmp_path / f'a-{i}.png') for i in (1, 2, 3)]
  for path, text in zip(lines, INPUTS):  # the reversed text and EOS on both axes
    assert Image.open(path).size == plotting.image_size(len(text) + 1, len(text) + 1)
  code, lines, err = _run(capsys, 'plot-attention', '--workdir', workdir, '--output', str(tmp_path / 'b.png'),
                          'abcdef')
  assert code == 0 and lines == [str(tmp_path / 'b.png')], err
