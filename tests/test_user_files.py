"""Training and evaluating from the user's own SOURCE<TAB>TARGET files, through the command line."""

import json
import os

import pytest

from seq2seq_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ['cat', 'dog', 'bird', 'fish', 'cow', 'hen', 'pig', 'owl', 'ant', 'bee', 'elk', 'fox', 'yak', 'emu']


def _write(path, lines):
  path.write_text(''.join(line + '\n' for line in lines), encoding='utf-8')
  return str(path)


def _run(capsys, *argv):
  rc = cli.main(list(argv))
  out, err = capsys.readouterr()
  return rc, out, err


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  d = tmp_path_factory.mktemp('files')
  # Phone-like targets tokenised by whitespace: each letter becomes an upper-case "phone".
  pairs = [f'{w}\t{" ".join(w.upper())}' for w in WORDS]
  return {'dir': d, 'train': _write(d / 'train.tsv', pairs * 20), 'dev': _write(d / 'dev.tsv', pairs[:4]),
          'refs': _write(d / 'refs.tsv', ['cat\tC A T\tK A T', 'dog\tD O G', 'fox\tF O K S\tF O X'])}


def _train_args(data, workdir, *extra):
  return ['train', '--config', os.path.join(ROOT, 'configs/reverse.py'), '--workdir', workdir,
          f'--config.data.train_file={data["train"]}', f'--config.data.validation_file={data["dev"]}',
          '--config.data.target_tokenizer=space', '--config.train.num_steps=60', '--config.train.eval_every=60',
          '--config.data.batch_size=16', *extra]


def test_train_on_files_then_eval_against_several_references(data, tmp_path, capsys):
  workdir = str(tmp_path / 'wd')
  rc, out, err = _run(capsys, *_train_args(data, workdir))
  assert rc == 0, err
  assert 'best_wer' in json.loads(out.strip().splitlines()[-1])  # space-tokenised targets: WER is the metric
  rc, out, err = _run(capsys, 'eval', '--workdir', workdir, '--references', data['refs'])
  assert rc == 0, err
  result = json.loads(out)
  assert result['num_items'] == 3 and {'per', 'wer', 'exact_match'} <= set(result)
  rc, out, err = _run(capsys, 'eval', '--workdir', workdir, '--split', 'test')
  assert rc == 2 and 'data.test_file is not' in err  # a files run has no test split unless one is given


@pytest.mark.parametrize('bad_line, message', [
    ('cat C A T', 'bad.tsv:3: '),
    ('\tC A T', 'bad.tsv:3: '),
])
def test_malformed_training_file_stops_before_training(data, tmp_path, capsys, bad_line, message):
  lines = [f'{w}\t{" ".join(w.upper())}' for w in WORDS]
  lines.insert(2, bad_line)
  bad = _write(tmp_path / 'bad.tsv', lines)
  workdir = tmp_path / 'wd'
  rc, _, err = _run(capsys, *_train_args({**data, 'train': bad}, str(workdir)))
  assert rc == 2
  assert err.startswith('error: ') and message in err and len(err.strip().splitlines()) == 1
  assert not (workdir / 'checkpoints').exists()


def test_over_long_line_in_a_file_is_named(data, tmp_path, capsys):
  bad = _write(tmp_path / 'long.tsv', [f'{w}\t{" ".join(w.upper())}' for w in WORDS] + ['a' * 80 + '\tA'])
  rc, _, err = _run(capsys, *_train_args({**data, 'train': bad}, str(tmp_path / 'wd')))
  assert rc == 2 and 'long.tsv:15: 80 source' in err and 'data.max_source_len=64' in err
