"""What the report scripts share: the CLI run in the repository root (each command echoed to stderr, its stdout
saved atomically), results kept as files so that a killed report resumes, and small table helpers.

A report script's results live under WORKDIR/report/: `train.json` records the arguments and wall time of the
`train` command (a training with other arguments is re-run, and its old results are removed), every other
result is the last JSON line a command printed, in a file named after it; an existing file is not recomputed.
"""

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def cli(*args: str, output: str | None = None, stdin: str | None = None) -> float:
  """Runs `python -m seq2seq_jax ARGS` in the repository root; stdout goes to `output` (atomically), stdin
  comes from the file `stdin`. Returns the wall time in seconds; a failure ends the report."""
  return run([sys.executable, '-m', 'seq2seq_jax', *args], output=output, stdin=stdin)


def run(command: list[str], output: str | None = None, stdin: str | None = None) -> float:
  shown = ['python', *command[1:]] if command[0] == sys.executable else command
  log('+ ' + shlex.join(shown) + (f' < {stdin}' if stdin else ''))
  start = time.perf_counter()
  with open(os.path.join(ROOT_DIR, stdin) if stdin else os.devnull, 'rb') as source:
    result = subprocess.run(command, cwd=ROOT_DIR, stdin=source, stdout=subprocess.PIPE, check=False)
  seconds = time.perf_counter() - start
  if result.returncode:
    sys.exit(f'failed ({result.returncode}): {shlex.join(command)}')
  if output:
    with open(output + '.tmp', 'wb') as f:
      f.write(result.stdout)
    os.replace(output + '.tmp', output)
  return seconds


def last_json(path: str) -> dict:
  with open(path, encoding='utf-8') as f:
    return json.loads(f.read().strip().splitlines()[-1])


def report_dir(workdir: str) -> str:
  """Where the results about `workdir` (relative to the repository root) are kept."""
  return os.path.join(ROOT_DIR, workdir, 'report')


def train(workdir: str, train_args: list[str]) -> dict:
  """Runs `train` unless WORKDIR/report/train.json records the same arguments (a killed run resumes from its
  last checkpoint). Returns {'args', 'seconds'}: the wall time of the run that finished it."""
  report = report_dir(workdir)
  marker = os.path.join(report, 'train.json')
  if os.path.isfile(marker) and last_json(marker)['args'] == train_args:
    return last_json(marker)
  if os.path.isdir(report):  # results of other training arguments
    shutil.rmtree(report)
  seconds = cli(*train_args)
  os.makedirs(report, exist_ok=True)
  with open(marker, 'w', encoding='utf-8') as f:
    json.dump({'args': train_args, 'seconds': seconds}, f)
  return last_json(marker)


def result(workdir: str, filename: str, *args: str, stdin: str | None = None) -> dict:
  """The last JSON line of `python -m seq2seq_jax ARGS`, kept in WORKDIR/report/FILENAME."""
  path = os.path.join(report_dir(workdir), filename)
  if not os.path.isfile(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cli(*args, output=path, stdin=stdin)
  return last_json(path)


def training_speed(workdir: str) -> tuple[float, float]:
  """(median tokens/s of the run's logged training intervals, their total seconds) from metrics.jsonl: the time
  spent in training steps, without start-up, evaluations and checkpoints, and the same when a run was resumed."""
  with open(os.path.join(ROOT_DIR, workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    rows = [row for row in map(json.loads, f) if row.get('kind') == 'train']
  seconds, previous = 0.0, 0
  for row in rows:
    seconds, previous = seconds + (row['step'] - previous) / row['steps_per_s'], row['step']
  return (statistics.median([row['tokens_per_s'] for row in rows]) if rows else float('nan')), seconds


def minutes(seconds: float) -> str:
  m, s = divmod(round(seconds), 60)
  return f'{m} min {s:02d} s'


def per_wer(r: dict) -> str:
  return f'{r["per"]:.2f} / {r["wer"]:.2f}'


def command(args: list[str]) -> str:
  return f'`seq2seq-jax {shlex.join(args)}`'
