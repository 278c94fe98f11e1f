"""Bad inputs end in one line (`error: ...`, exit status 2) and leave no workdir behind (issue 16, items 1, 7-9):
predict's line ends, unreadable inputs, unusable paths, config values and files, a NaN under a progress bar,
Ctrl-C outside training's loop.

The commands run in this process through `cli.main` (fast), on one tiny trained workdir; two run as real
processes where the process itself matters (a strict locale, a second Ctrl-C).
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from seq2seq_jax import cli, config
from seq2seq_jax.training import parallel, train
from tests.cli_helpers import one_error_line, run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['data.task=reverse', 'data.min_len=5', 'data.max_len=5', 'data.num_train=300', 'data.num_eval=16',
        'data.batch_size=16', 'model.embed_size=8', 'model.encoder_size=8', 'model.decoder_size=16',
        'model.attention_size=8', 'model.dropout=0.1', 'train.teacher_forcing=linear', 'train.num_steps=30',
        'train.log_every=5', 'train.eval_every=10', 'train.checkpoint_every=5', 'train.keep_checkpoints=2',
        'train.attention_plots=0', 'train.eval_examples=16']  # as in test_faults.py: the same compiled programs


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('trained'))
  train.train(config.load_config(os.path.join(ROOT, 'configs/reverse.py'), TINY), workdir, log=lambda m: None)
  return workdir


def _train_argv(workdir, *extra):
  return ['train', '--config', 'configs/reverse.py', '--workdir', str(workdir), *[f'--config.{o}' for o in extra]]


@pytest.mark.parametrize('data, lines', [
    (b'abcde\x0c\nedcba\n', 2),         # \f ends a line for str.splitlines(), not here (and is stripped)
    (b'abcde\r\nabc\r\n', 2), (b'abcde\nab', 2), (b'abc', 1), (b'', 0), (b'\xef\xbb\xbfabc\n', 1),
])
def test_predict_prints_one_line_per_input_line(trained, capsys, monkeypatch, data, lines):
  code, out, err = run_main(capsys, 'predict', '--workdir', trained, stdin=data, monkeypatch=monkeypatch)
  assert code == 0, err
  assert out.count('\n') == len(out.splitlines()) == lines, out


@pytest.mark.parametrize('separator', ['\u2028', '\u2029', '\x85', '\x0b', '\x1c', '\x1d', '\x1e'])
def test_predict_keeps_other_line_separators_inside_their_line(trained, capsys, monkeypatch, separator):
  data = f'abc{separator}de\nfg\n'.encode()
  code, _, err = run_main(capsys, 'predict', '--workdir', trained, stdin=data, monkeypatch=monkeypatch)
  one_error_line(code, err, f'<stdin>:1: unknown symbol {separator!r}')  # one line: the first, not split


def test_predict_inputs_that_cannot_be_read(trained, tmp_path, capsys, monkeypatch):
  (tmp_path / 'latin1.txt').write_bytes(b'abc\nd\xe9f\n')
  for path, message in ((tmp_path / 'none.txt', 'file not found'), (tmp_path, 'is a directory'),
                        (tmp_path / 'latin1.txt', ':2: not valid UTF-8 (byte 0xe9 at column 2, byte offset 5')):
    code, _, err = run_main(capsys, 'predict', '--workdir', trained, '--input', str(path))
    one_error_line(code, err, f'{path}', message)
  code, _, err = run_main(capsys, 'predict', '--workdir', trained, stdin=b'abc\n\xff\n', monkeypatch=monkeypatch)
  one_error_line(code, err, '<stdin>:2: not valid UTF-8 (byte 0xff at column 1, byte offset 4 of the input)')


def test_stdin_not_utf8_under_a_strict_c_locale(trained):
  env = {**os.environ, 'LC_ALL': 'C', 'LANG': 'C', 'PYTHONUTF8': '0', 'PYTHONCOERCECLOCALE': '0',
         'PYTHONIOENCODING': 'ascii:strict'}
  r = subprocess.run([sys.executable, '-m', 'seq2seq_jax', 'predict', '--workdir', trained], input=b'abc\n\xff\n',
                     capture_output=True, cwd=ROOT, env=env, timeout=240)
  assert r.returncode == 2 and r.stderr.decode().strip().splitlines() == [
      'error: <stdin>:2: not valid UTF-8 (byte 0xff at column 1, byte offset 4 of the input)'], r.stderr


def test_unusable_workdir_and_output_paths(trained, tmp_path, capsys):
  a_file = tmp_path / 'file'
  a_file.write_text('x')
  code, _, err = run_main(capsys, *_train_argv(a_file, *TINY))
  one_error_line(code, err, f'workdir {a_file}: is a file, not a directory')
  code, _, err = run_main(capsys, *_train_argv(a_file / 'run', *TINY))
  one_error_line(code, err, f'workdir {a_file / "run"}: cannot be created: {a_file} is a file')
  for output, message in ((a_file / 'attention.png', f'cannot be created: {a_file} is a file'),
                          (tmp_path, 'is a directory')):
    code, _, err = run_main(capsys, 'plot-attention', '--workdir', trained, '--output', str(output), 'abc')
    one_error_line(code, err, f'--output {output}: {message}')
  assert sorted(os.listdir(tmp_path)) == ['file'] and a_file.read_text() == 'x'


@pytest.mark.parametrize('override, message', [
    ('train.log_every=0', 'train.log_every=0 must be at least 1'),
    ('train.eval_every=0', 'train.eval_every=0 must be at least 1'),
    ('train.checkpoint_every=0', 'train.checkpoint_every=0 must be at least 1'),
    ('data.max_source_len=0', 'data.max_source_len=0 must be at least 1'),
    ('data.num_train=0', 'data.num_train=0 must be at least 1'),
    ('train.learning_rate=-0.001', 'train.learning_rate=-0.001 must be > 0'),
    ('decode.top_p=1.5', 'decode.top_p=1.5 must be in (0, 1]'),
    ('decode.min_len=-1', 'decode.min_len=-1 must be at least 0'),
    ('decode.no_repeat_ngram=-1', 'decode.no_repeat_ngram=-1 must be at least 0'),
    ('data.max_source_len=3', 'no training data: 300 training pairs read, 300 of them longer than'),
])
def test_config_values_that_would_crash_later(tmp_path, capsys, override, message):
  code, _, err = run_main(capsys, *_train_argv(tmp_path / 'run', *TINY, override))
  one_error_line(code, err, message)
  assert not os.path.exists(tmp_path / 'run')


def test_training_file_holding_only_a_byte_order_mark(tmp_path, capsys):
  (tmp_path / 'bom.tsv').write_bytes(b'\xef\xbb\xbf')
  (tmp_path / 'dev.tsv').write_text('ab\tba\n')
  files = [f'data.{split}_file={tmp_path / name}' for split, name in
           (('train', 'bom.tsv'), ('validation', 'dev.tsv'), ('test', 'dev.tsv'))]
  code, _, err = run_main(capsys, *_train_argv(tmp_path / 'run', 'data.task=files', *files))
  one_error_line(code, err, f'{tmp_path / "bom.tsv"}: empty file (nothing but a byte-order mark)')
  assert not os.path.exists(tmp_path / 'run')


@pytest.mark.parametrize('text, where, message', [
    ('def get_config(:\n  pass\n', 1, 'invalid syntax'),
    ('from seq2seq_jax import config\n\ndef get_config():\n  c = config.default_config()\n'
     '  c.train.num_steps = "many"\n  return c\n', 5, "TypeError: Could not override field 'num_steps'"),
    ('def get_config():\n  return undefined_name\n', 2, "NameError: name 'undefined_name' is not defined"),
    ('def get_config():\n  return {}\n', None, 'get_config() returned a dict'),
])
def test_config_file_errors_name_file_and_line(tmp_path, capsys, text, where, message):
  path = tmp_path / 'bad_config.py'
  path.write_text(text)
  code, _, err = run_main(capsys, 'train', '--config', str(path), '--workdir', str(tmp_path / 'run'))
  one_error_line(code, err, f'{path}:{where}: ' if where else f'{path}: ', message)
  assert not os.path.exists(tmp_path / 'run')


def test_nan_error_starts_on_its_own_line_after_the_progress_bar(tmp_path, capsys, monkeypatch):
  """Under a progress bar (stderr a terminal) the non-finite-loss error begins a line of its own."""
  original, calls = parallel.DataParallel.metrics, []

  def poisoned(self, m):  # the 7th step's metrics report a non-finite loss: no other compiled program needed
    out = original(self, m)
    calls.append(1)
    return dict(out, nonfinite=1) if len(calls) == 7 else out
  monkeypatch.setattr(parallel.DataParallel, 'metrics', poisoned)
  capsys.readouterr()
  monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
  code = cli.main(_train_argv(tmp_path / 'run', *TINY))
  err = capsys.readouterr().err
  assert code == 2 and '\r' in err, err  # a tqdm bar was drawn
  before, after = err.split('error: non-finite loss or gradient at step 7', 1)
  assert before.endswith('\n') and after.count('\n') == 1, err


def test_ctrl_c_outside_the_training_loop_is_one_line(capsys, monkeypatch):
  def interrupted(args, overrides):
    raise KeyboardInterrupt
  monkeypatch.setitem(cli.COMMANDS, 'info', interrupted)
  code, _, err = run_main(capsys, 'info', '--workdir', 'anywhere')
  assert code == 130 and err.strip() == 'interrupted', err


def test_second_ctrl_c_aborts_at_once_even_while_the_main_thread_waits():
  """The main thread blocks in a wait that Python's handler would not interrupt soon (like XLA compiling): the
  first SIGINT is only recorded, the second ends the process at once with status 130."""
  script = ('import threading\nfrom seq2seq_jax.training.signals import StopSignals\n'
            'with StopSignals(on_abort=lambda: print("released", flush=True)) as stop:\n'
            '  print("ready", flush=True)\n  threading.Event().wait(60)\n')
  proc = subprocess.Popen([sys.executable, '-c', script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  try:
    assert proc.stdout.readline() == 'ready\n'
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # the first one only asks to stop after the current step
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert proc.returncode == 130 and time.monotonic() - start < 5
  assert out == 'released\n' and 'aborted: a second Ctrl-C' in err and 'Traceback' not in err
