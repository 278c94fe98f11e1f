"""Decoding options through the command line (in-process) on a tiny trained reverse model: beam search, n-best,
sampling, the decoding controls (top-p, minimum length, n-gram blocking, prefixes), interactive predict."""

import io
import json
import os
import select
import subprocess
import sys
import time

import pytest
from PIL import Image

from seq2seq_jax import cli, config
from seq2seq_jax.decoding import DecodeOptions, Predictor, search
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
      'model.attention_size=32', 'model.bidirectional=False', 'decode.batch_size=16', 'data.max_source_len=8'])
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
    (['--sample', '--top-p', '0'], 'top-p must be in (0, 1]'),
    (['--top-p', '0.5'], 'apply to sampling only'),
    (['--min-len', '-1'], 'min-len must be >= 0'),
    (['--no-repeat-ngram', '-2'], 'no-repeat-ngram must be >= 0'),
    (['--interactive', '--input', 'x.txt'], '--interactive reads stdin'),
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


def _lines(tmp_path, name, lines) -> str:
  path = tmp_path / name
  path.write_text(''.join(line + '\n' for line in lines))
  return str(path)


def _repeats(text: str, n: int) -> bool:
  grams = [text[i:i + n] for i in range(len(text) - n + 1)]
  return len(set(grams)) < len(grams)


@pytest.fixture(scope='module')
def control_inputs(tmp_path_factory):
  return _lines(tmp_path_factory.mktemp('controls'), 'in.txt', ['aaaa', 'abab', 'hgfe'])


def test_no_repeat_ngram_and_prefix_file_flags(capsys, workdir, control_inputs, tmp_path):
  greedy = _predict(capsys, workdir, control_inputs)
  assert greedy[:2] == ['aaaa', 'baba'] and all(_repeats(o, 2) for o in greedy[:2])
  blocked = _predict(capsys, workdir, control_inputs, '--no-repeat-ngram', '2')
  assert not any(_repeats(o, 2) for o in blocked) and blocked[:2] != greedy[:2], blocked
  prefixes = _lines(tmp_path, 'prefixes.txt', ['ba', '', 'h'])
  forced = _predict(capsys, workdir, control_inputs, '--prefix-file', prefixes)
  assert forced[0].startswith('ba') and forced[1] == greedy[1] and forced[2].startswith('h') and forced != greedy


def test_top_p_flag(capsys, workdir, control_inputs):
  # a nucleus of almost no probability holds the most likely token alone: greedy
  sampled = _predict(capsys, workdir, control_inputs, '--sample', '--top-p', '0.01', '--seed', '5')
  assert sampled == _predict(capsys, workdir, control_inputs)


def test_eval_and_decode_speed_take_the_controls_as_flags_or_config_keys(capsys, workdir):
  results = []
  for flags in ((), ('--min-len', '9'), ('--config.decode.min_len=9',)):
    code, lines, err = _run(capsys, 'eval', '--workdir', workdir, '--split', 'test', *flags)
    assert code == 0, err
    results.append(json.loads(lines[-1]))
  plain, flag, key = results
  assert flag == key and flag['exact_match'] == 0.0 < plain['exact_match']  # every target is at most 6 long
  code, lines, err = _run(capsys, 'decode-speed', '--workdir', workdir, '--split', 'test', '--min-len', '9')
  assert code == 0, err
  speed = json.loads(lines[-1])
  assert speed['min_len'] == 9 and speed['wer'] == 100.0 and speed['sources'] == 20


def test_prefix_file_errors_name_the_file_and_line(capsys, workdir, input_file, tmp_path):
  for lines, needle in ((['dc', 'z', ''], 'prefixes.txt:2: unknown symbol \'z\''),
                        (['dc', ''], '2 prefix line(s) for 3 input line(s)'),
                        (['', 'a' * 20, ''], 'prefixes.txt:2: a prefix of 20 tokens, over the output limit 16')):
    path = _lines(tmp_path, 'prefixes.txt', lines)
    code, out, err = _run(capsys, 'predict', '--workdir', workdir, '--input', input_file, '--prefix-file', path)
    assert code == 2 and not out and err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    assert needle in err, err


# Interactive predict: each line answered as soon as it is read, bad lines answered by an error, no compilation
# after start-up.

def test_warm_up_compiles_every_bucket_once_and_lines_compile_nothing(workdir):
  predictor = Predictor.load(workdir)
  assert predictor.warm_up() == [4, 8, 12]  # the bucket lengths of sources of 1 .. 8 symbols (+ EOS)
  compiled = search.decode._cache_size()
  assert predictor.predict(['abc']) == ['cba']  # padded to 4
  assert predictor.predict(['hgfedc']) == ['cdefgh']  # padded to 8: another shape, already compiled
  assert search.decode._cache_size() == compiled
  cold = DecodeOptions(beam=2)  # not warmed up: the counter sees each new shape compile
  predictor.predict(['abc'], options=cold)
  predictor.predict(['hgfedc'], options=cold)
  assert search.decode._cache_size() == compiled + 2


def _read_line(fd: int, timeout: float) -> str:
  """One line from a pipe's file descriptor, waiting at most `timeout` seconds for it."""
  data, deadline = b'', time.monotonic() + timeout
  while not data.endswith(b'\n'):
    ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
    assert ready, f'no complete line within {timeout} s (so far {data!r})'
    byte = os.read(fd, 1)  # one byte at a time: never past the line
    assert byte, f'end of output (so far {data!r})'
    data += byte
  return data.decode('utf-8')[:-1]


def _stderr_line(fd: int, timeout: float) -> str:
  """The next line of stderr that the command itself wrote (error: / ready:), skipping library warnings."""
  while True:
    line = _read_line(fd, timeout)
    if line.startswith(('error: ', 'ready: ')):
      return line


def test_interactive_answers_each_line_before_the_next_through_a_pipe(capsys, workdir, tmp_path):
  lines = ['abc', 'ab!', '', 'abcdefghab', 'hgfedc']
  batch = _predict(capsys, workdir, _lines(tmp_path, 'in.txt', ['abc', 'hgfedc', 'abcd']))[:2]
  proc = subprocess.Popen([sys.executable, '-m', 'seq2seq_jax', 'predict', '--workdir', workdir, '--interactive'],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, bufsize=0)
  try:
    out, err = proc.stdout.fileno(), proc.stderr.fileno()
    answers, errors = [], []
    for i, line in enumerate(lines):
      proc.stdin.write(line.encode() + b'\n')  # one line, then its answer before the next line is written
      answers.append(_read_line(out, 300 if i == 0 else 60))
      if i == 0:
        assert _stderr_line(err, 10).startswith('ready: decoders compiled for sources padded to 4, 8, 12')
      if i in (1, 2, 3):
        errors.append(_stderr_line(err, 10))
    proc.stdin.close()
    assert proc.wait(timeout=60) == 2
    final = _stderr_line(err, 10)
  finally:
    proc.kill()
  assert answers == [batch[0], '', '', '', batch[1]]
  assert errors == ["error: <stdin>:2: unknown symbol '!' (not in the training vocabulary)",
                    'error: <stdin>:3: empty line', 'error: <stdin>:4: 10 symbols, over data.max_source_len=8']
  assert final == 'error: 3 of 5 input lines had errors (each answered above)'


class _Terminal(io.TextIOWrapper):
  """stdin as a terminal: isatty() is True."""

  def isatty(self):
    return True


def test_a_terminal_on_stdin_makes_predict_interactive(capsys, monkeypatch, workdir, tmp_path):
  flags = ('--sample', '--seed', '3', '--temperature', '3.0', '--top-p', '0.9', '--format', 'jsonl')
  batch = _predict(capsys, workdir, _lines(tmp_path, 'in.txt', ['abc', 'abc', 'hgfedc']), *flags)
  first = _predict(capsys, workdir, _lines(tmp_path, 'in.txt', ['hgfedc', 'abc', 'abc']), *flags)
  assert json.loads(first[0])['text'] != json.loads(batch[2])['text']  # the line's number picks its sample
  monkeypatch.setattr(sys, 'stdin', _Terminal(io.BytesIO(b'abc\nab!\nhgfedc\n'), encoding='utf-8'))
  code, lines, err = _run(capsys, 'predict', '--workdir', workdir, *flags)
  assert code == 2 and len(lines) == 3
  for i in (0, 2):  # each line samples with its own line's key, as in the whole input
    got, want = json.loads(lines[i]), json.loads(batch[i])
    assert got['text'] == want['text'] and got['score'] == pytest.approx(want['score'], rel=1e-5)
  assert json.loads(lines[1]) == {'source': 'ab!', 'error': "<stdin>:2: unknown symbol '!' (not in the training "
                                                            "vocabulary)"}
  assert [line.split(':')[0] for line in err.splitlines()] == ['ready', 'error', 'error']
