"""The pointer-generator from the command line, on a tiny model trained briefly on a tiny copy task ("say Qwert"
-> "Qwert", "Qwert please" -> "Qwert", with words that are never in the vocabulary): unseen words come out of
`predict` verbatim, eval with ROUGE, the attention plot's p_gen column, and one-line refusals (a copy checkpoint
under a config without copy, export)."""

import json
import os
import shutil
import string

import numpy as np
import pytest
from PIL import Image

from seq2seq_jax import cli
from seq2seq_jax.evaluation import plotting
from tests.cli_helpers import one_error_line, run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = ('say {w}', '{w} please')
SETTINGS = ['data.source_tokenizer=space', 'data.target_tokenizer=space', 'data.shared_vocab=true',
            'data.min_count=3', 'data.batch_size=32', 'data.max_source_len=4', 'data.max_target_len=4',
            'model.copy=true', 'model.tie_embeddings=true', 'model.embed_size=16', 'model.encoder_size=16',
            'model.decoder_size=32', 'model.attention_size=16', 'train.num_steps=120', 'train.eval_every=120',
            'train.learning_rate=0.02', 'train.warmup_steps=10', 'train.eval_examples=20',
            'train.attention_plots=1', 'decode.batch_size=8']


def _word(rng) -> str:
  return rng.choice(list(string.ascii_uppercase)) + ''.join(rng.choice(list(string.ascii_lowercase), 5))


def _write(path, rng, n: int) -> None:
  lines = []
  for _ in range(n):
    w = _word(rng)
    lines.append(f'{TEMPLATES[int(rng.integers(2))].format(w=w)}\t{w}\n')
  path.write_text(''.join(lines))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """(workdir, its train command's arguments)."""
  data = tmp_path_factory.mktemp('data')
  rng = np.random.default_rng(0)
  for name, n in (('train', 800), ('dev', 20), ('test', 20)):
    _write(data / f'{name}.tsv', rng, n)
  folder = str(tmp_path_factory.mktemp('copy_tiny') / 'run')
  files = [f'data.train_file={data / "train.tsv"}', f'data.validation_file={data / "dev.tsv"}',
           f'data.test_file={data / "test.tsv"}']
  argv = ['train', '--config', os.path.join(ROOT, 'configs/copy.py'), '--workdir', folder,
          *[f'--config.{o}' for o in SETTINGS + files]]
  assert cli.main(argv) == 0
  return folder, argv


@pytest.fixture(scope='module')
def workdir(trained):
  return trained[0]


def test_predict_copies_words_it_never_saw(workdir, capsys, monkeypatch):
  words = ['Zyxwvu', 'Qpmhtk', 'Élodie', 'Łukasz']  # never in training; two with letters of no training word
  lines = ''.join(TEMPLATES[i % 2].format(w=w) + '\n' for i, w in enumerate(words))
  # greedy, beam, an ensemble of copy models, sampling at a low temperature
  for flags in ((), ('--beam', '3'), ('--workdir', workdir), ('--sample', '--temperature', '0.05')):
    code, out, err = run_main(capsys, 'predict', '--workdir', workdir, *flags, stdin=lines.encode(),
                              monkeypatch=monkeypatch)
    assert code == 0, err
    assert out.splitlines() == words



def test_a_forced_prefix_may_name_words_of_its_own_line(workdir, capsys, tmp_path, monkeypatch):
  """--prefix-file with a copy model: a word of the input line that no vocabulary holds is forced as its extended
  id (and comes out verbatim); one that the line lacks too is a one-line error naming the prefix file's line."""
  prefixes = tmp_path / 'prefixes.txt'
  prefixes.write_text('please Qpmhtk\n\n')
  code, out, err = run_main(capsys, 'predict', '--workdir', workdir, '--prefix-file', str(prefixes),
                            stdin=b'Qpmhtk please\nsay Zyxwvu\n', monkeypatch=monkeypatch)
  assert code == 0, err
  first, second = out.splitlines()
  assert first.split()[:2] == ['please', 'Qpmhtk'] and second == 'Zyxwvu'
  prefixes.write_text('Zyxwvu\n')
  code, _, err = run_main(capsys, 'predict', '--workdir', workdir, '--prefix-file', str(prefixes),
                          stdin=b'Qpmhtk please\n', monkeypatch=monkeypatch)
  one_error_line(code, err, f'{prefixes}:1', "unknown symbol 'Zyxwvu'")

def test_eval_scores_copies_and_reports_rouge(workdir, capsys):
  code, out, err = run_main(capsys, 'eval', '--workdir', workdir, '--split', 'test', '--config.data.metric=rouge')
  assert code == 0, err
  result = json.loads(out)
  assert result['exact_match'] == 100.0 and result['num_items'] == 20
  assert result['rouge1'] == result['rougeL'] == 100.0 and result['rouge2'] == 0.0  # one-word outputs
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    validation = [json.loads(line) for line in f if '"validation"' in line][-1]
  assert validation['exact_match'] == 100.0  # the validation words were copied too


def test_the_attention_plot_has_a_p_gen_column(workdir, capsys, tmp_path):
  output = str(tmp_path / 'attention.png')
  code, out, err = run_main(capsys, 'plot-attention', '--workdir', workdir, '--output', output, 'say Zyxwvu')
  assert code == 0, err
  # columns: say, Zyxwvu, </s>, p_gen; rows: Zyxwvu, </s>
  assert Image.open(output).size == plotting.image_size(4, 2)
  assert os.listdir(os.path.join(workdir, 'attention'))  # written during training too


def test_a_copy_checkpoint_does_not_load_into_a_config_without_copy(trained, capsys, tmp_path, monkeypatch):
  workdir, argv = trained
  code, _, err = run_main(capsys, *argv, '--config.model.copy=false')
  one_error_line(code, err, 'holds a run with another config: model.copy=True there, False now')
  edited = str(tmp_path / 'edited')
  shutil.copytree(workdir, edited)
  with open(os.path.join(edited, 'config.json'), encoding='utf-8') as f:
    cfg = json.load(f)
  cfg['model']['copy'] = False
  with open(os.path.join(edited, 'config.json'), 'w', encoding='utf-8') as f:
    json.dump(cfg, f)
  code, _, err = run_main(capsys, 'predict', '--workdir', edited, stdin=b'say Abcdef\n', monkeypatch=monkeypatch)
  one_error_line(code, err, 'does not fit this config', "['decoder']['copy']")


def test_export_refuses_a_copy_model(workdir, capsys, tmp_path):
  code, _, err = run_main(capsys, 'export', '--workdir', workdir, '--output', str(tmp_path / 'model.s2s.npz'))
  one_error_line(code, err, 'pointer-generator (model.copy)', 'not exported')
