"""The attention-kinds comparison of the README: six variants of the G2P main job, trained and measured alike.

  python report/attention_kinds.py                 # everything, then the Markdown table on stdout

For each variant it runs, with this Python (`python -m seq2seq_jax ...`; every command is echoed to stderr):
  train         --config configs/g2p_cmudict.py --workdir ROOT/attn-NAME  (the config's budget and sizes) + overrides
  eval          --split test                     greedy PER/WER (and the teacher-forced loss, soft attention)
  decode-speed  --split test                     greedy words/s (median of 3 passes after a compiling pass)
  decode-speed  --split test --beam 5            beam-5 PER/WER and words/s
  eval          --split test --beam 5 --coverage-penalty CP   (skipped with ATTN_COVERAGE_PENALTY=0)
  plot-attention WORD                            the greedy attention of one fixed test word, copied to FIGURES/NAME.png
and prints one Markdown table. Training tokens/s is the median of the run's logged intervals (metrics.jsonl);
train time is the wall time of the `train` command when it ran in one go.

Resumable: each result is a file under ROOT/attn-NAME/report/, and a step whose file exists is skipped; `train` is
skipped when report/train.json records the same arguments (a killed run resumes from its last checkpoint).
Changing the arguments re-runs training and everything after it, so give a smoke run its own ROOT.

Environment:
  ATTN_ROOT                where the workdirs go, relative to the repository root (default workdirs)
  ATTN_OVERRIDES           extra `--config.KEY=VALUE` arguments for every variant's train, e.g. a smoke run:
                           ATTN_OVERRIDES="--config.train.num_steps=20 --config.train.eval_examples=50"
  ATTN_VARIANTS            comma-separated subset of the variants below (default: all)
  ATTN_WORD                the word drawn (default 'chemistry', in the test split)
  ATTN_COVERAGE_PENALTY    β of the extra beam-5 column with GNMT's coverage penalty (default 0.2; 0: skip it)
  ATTN_FIGURES             where the PNGs are copied (default report/attention)
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
CONFIG = 'configs/g2p_cmudict.py'

# name -> (what it is, its overrides of the G2P config)
VARIANTS = {
    'additive': ('`additive` (today\'s default)', []),
    'location': ('`location`', ['--config.model.attention=location']),
    'monotonic': ('`monotonic`', ['--config.model.attention=monotonic']),
    'mocha': ('`mocha`', ['--config.model.attention=mocha']),
    'guided': ('`additive` + guided loss', ['--config.train.guided_loss=1.0', '--config.train.guided_width=0.2',
                                            '--config.train.guided_anneal_steps=4400']),
    'coverage': ('`coverage` + coverage loss', ['--config.model.attention=coverage',
                                                '--config.train.coverage_loss=1.0']),
}


def log(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def cli(*args: str, output: str | None = None) -> float:
  """Runs `python -m seq2seq_jax ARGS` in the repository root; stdout goes to `output` (atomically). Returns the
  wall time in seconds."""
  command = [sys.executable, '-m', 'seq2seq_jax', *args]
  log('+ ' + shlex.join(['python', '-m', 'seq2seq_jax', *args]))
  start = time.perf_counter()
  result = subprocess.run(command, cwd=ROOT_DIR, stdout=subprocess.PIPE, text=True, check=False)
  seconds = time.perf_counter() - start
  if result.returncode:
    sys.exit(f'failed ({result.returncode}): {shlex.join(command)}')
  if output:
    with open(output + '.tmp', 'w', encoding='utf-8') as f:
      f.write(result.stdout)
    os.replace(output + '.tmp', output)
  return seconds


def last_json(path: str) -> dict:
  with open(path, encoding='utf-8') as f:
    return json.loads(f.read().strip().splitlines()[-1])


def run_variant(name: str, overrides: list[str], root: str, extra: list[str], word: str, penalty: float,
                figures: str) -> dict:
  workdir = os.path.join(root, f'attn-{name}')  # as the commands see it (they run in the repository root)
  report = os.path.join(ROOT_DIR, workdir, 'report')
  train_args = ['train', '--config', CONFIG, '--workdir', workdir, *overrides, *extra]
  marker = os.path.join(report, 'train.json')
  done = os.path.isfile(marker) and last_json(marker)['args'] == train_args
  if not done:
    if os.path.isdir(report):  # results of other training arguments
      shutil.rmtree(report)
    seconds = cli(*train_args)
    os.makedirs(report, exist_ok=True)
    with open(marker, 'w', encoding='utf-8') as f:
      json.dump({'args': train_args, 'seconds': seconds}, f)

  def step(filename: str, *args: str) -> dict:
    path = os.path.join(report, filename)
    if not os.path.isfile(path):
      cli(*args, output=path)
    return last_json(path)

  out = {'train': last_json(marker),
         'greedy': step('eval_greedy.json', 'eval', '--workdir', workdir, '--split', 'test'),
         'speed_greedy': step('speed_greedy.json', 'decode-speed', '--workdir', workdir, '--split', 'test'),
         'speed_beam5': step('speed_beam5.json', 'decode-speed', '--workdir', workdir, '--split', 'test',
                             '--beam', '5')}
  if penalty:
    out['beam5_cp'] = step(f'eval_beam5_cp{penalty:g}.json', 'eval', '--workdir', workdir, '--split', 'test',
                           '--beam', '5', '--coverage-penalty', f'{penalty:g}')
  png = os.path.join(report, f'attention-{word}.png')
  if not os.path.isfile(png):
    cli('plot-attention', '--workdir', workdir, '--output', os.path.join(workdir, 'report', f'attention-{word}.png'),
        word)
  os.makedirs(figures, exist_ok=True)
  shutil.copyfile(png, os.path.join(figures, f'{name}.png'))
  out['png'] = os.path.relpath(os.path.join(figures, f'{name}.png'), ROOT_DIR)  # as the README links it
  with open(os.path.join(ROOT_DIR, workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    rates = [row['tokens_per_s'] for row in map(json.loads, f) if row.get('kind') == 'train']
  out['tokens_per_s'] = statistics.median(rates) if rates else float('nan')
  return out


def table(results: dict, penalty: float, word: str) -> str:
  cp = f' | beam 5, cp {penalty:g}: PER / WER' if penalty else ''
  lines = [f'| variant | greedy: PER / WER | beam 5: PER / WER{cp} | training tokens/s | train time '
           f'| greedy words/s | beam-5 words/s | attention ({word}) |',
           '|---|---|---|' + ('---|' if penalty else '') + '---|---|---|---|---|']
  for name, r in results.items():
    g, b = r['greedy'], r['speed_beam5']
    cells = [VARIANTS[name][0], f'{g["per"]:.2f} / {g["wer"]:.2f}', f'{b["per"]:.2f} / {b["wer"]:.2f}']
    if penalty:
      cells.append(f'{r["beam5_cp"]["per"]:.2f} / {r["beam5_cp"]["wer"]:.2f}')
    minutes, seconds = divmod(round(r['train']['seconds']), 60)
    cells += [f'{r["tokens_per_s"]:,.0f}', f'{minutes} min {seconds:02d} s',
              f'{r["speed_greedy"]["sources_per_s"]:,.0f}', f'{b["sources_per_s"]:,.0f}', f'![{name}]({r["png"]})']
    lines.append('| ' + ' | '.join(cells) + ' |')
  commands = [f'- {VARIANTS[name][0]}: `seq2seq-jax {shlex.join(r["train"]["args"])}`' for name, r in results.items()]
  return '\n'.join(lines + [''] + commands)


def main() -> None:
  root = os.environ.get('ATTN_ROOT', 'workdirs')
  extra = shlex.split(os.environ.get('ATTN_OVERRIDES', ''))
  names = [n for n in os.environ.get('ATTN_VARIANTS', ','.join(VARIANTS)).split(',') if n]
  unknown = sorted(set(names) - set(VARIANTS))
  if unknown:
    sys.exit(f'unknown variant(s) {", ".join(unknown)}; choose from {", ".join(VARIANTS)}')
  word = os.environ.get('ATTN_WORD', 'chemistry')
  penalty = float(os.environ.get('ATTN_COVERAGE_PENALTY', '0.2'))
  figures = os.environ.get('ATTN_FIGURES', os.path.join(ROOT_DIR, 'report', 'attention'))
  results = {name: run_variant(name, VARIANTS[name][1], root, extra, word, penalty, figures) for name in names}
  print(table(results, penalty, word))


if __name__ == '__main__':
  main()
