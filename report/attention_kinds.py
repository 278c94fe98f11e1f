"""The attention-kinds comparison of the README: six variants of the G2P main job, trained and measured alike.

  python report/attention_kinds.py                 # everything, then the Markdown table on stdout

For each variant it runs, with this Python (`python -m seq2seq_jax ...`; every command is echoed to stderr):
  train         --config configs/g2p_cmudict_v1.py --workdir ROOT/attn-NAME  (its budget and sizes) + overrides
  eval          --split test                     greedy PER/WER (and the teacher-forced loss, soft attention)
  decode-speed  --split test                     greedy words/s (median of 3 passes after a compiling pass)
  decode-speed  --split test --beam 5            beam-5 PER/WER and words/s
  bench         --config ... + overrides --no-decode   training tokens/s (50 steps of the training stream)
  eval          --split test --beam 5 --coverage-penalty CP   (skipped with ATTN_COVERAGE_PENALTY=0)
  plot-attention WORD                            the greedy attention of one fixed test word, copied to FIGURES/NAME.png
and prints one Markdown table. Training tokens/s is `bench`'s (a separate short run, so that it can be measured
on a quiet machine when the training was not), train time the sum of the run's logged training intervals
(metrics.jsonl: the time in training steps, also when a run was resumed).

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

import os
import shlex
import shutil
import sys

from common import ROOT_DIR, cli, command, minutes, per_wer, report_dir, result, train, training_speed

CONFIG = 'configs/g2p_cmudict_v1.py'

# name -> (what it is, its overrides of the G2P config)
VARIANTS = {
    'additive': ('`additive` (the default)', []),
    'location': ('`location`', ['--config.model.attention=location']),
    'monotonic': ('`monotonic`', ['--config.model.attention=monotonic']),
    'mocha': ('`mocha`', ['--config.model.attention=mocha']),
    'guided': ('`additive` + guided loss', ['--config.train.guided_loss=1.0', '--config.train.guided_width=0.2',
                                            '--config.train.guided_anneal_steps=4400']),
    'coverage': ('`coverage` + coverage loss', ['--config.model.attention=coverage',
                                                '--config.train.coverage_loss=1.0']),
}


def workdir_of(root: str, name: str) -> str:
  return os.path.join(root, f'attn-{name}')  # as the commands see it (they run in the repository root)


def train_args(root: str, name: str, extra: tuple[str, ...] = ()) -> list[str]:
  """The `train` arguments of variant `name` (also how report/cmudict.py finds or makes its run)."""
  return ['train', '--config', CONFIG, '--workdir', workdir_of(root, name), *VARIANTS[name][1], *extra]


def run_variant(name: str, overrides: list[str], root: str, extra: list[str], word: str, penalty: float,
                figures: str) -> dict:
  workdir = workdir_of(root, name)
  out = {'train': train(workdir, train_args(root, name, extra)),
         'greedy': result(workdir, 'eval_greedy.json', 'eval', '--workdir', workdir, '--split', 'test'),
         'speed_greedy': result(workdir, 'speed_greedy.json', 'decode-speed', '--workdir', workdir, '--split',
                                'test'),
         'speed_beam5': result(workdir, 'speed_beam5.json', 'decode-speed', '--workdir', workdir, '--split',
                               'test', '--beam', '5')}
  out['bench'] = result(workdir, 'bench.json', 'bench', '--config', CONFIG, *overrides, *extra, '--no-decode',
                        '--output', os.devnull)  # (the JSON line is kept from stdout)
  if penalty:
    out['beam5_cp'] = result(workdir, f'eval_beam5_cp{penalty:g}.json', 'eval', '--workdir', workdir, '--split',
                             'test', '--beam', '5', '--coverage-penalty', f'{penalty:g}')
  png = os.path.join(report_dir(workdir), f'attention-{word}.png')
  if not os.path.isfile(png):
    cli('plot-attention', '--workdir', workdir, '--output', os.path.join(workdir, 'report', f'attention-{word}.png'),
        word)
  os.makedirs(figures, exist_ok=True)
  shutil.copyfile(png, os.path.join(figures, f'{name}.png'))
  out['png'] = os.path.relpath(os.path.join(figures, f'{name}.png'), ROOT_DIR)  # as the README links it
  out['train_seconds'] = training_speed(workdir)[1]
  return out


def table(results: dict, penalty: float, word: str) -> str:
  cp = f' | beam 5, cp {penalty:g}: PER / WER' if penalty else ''
  lines = [f'| variant | greedy: PER / WER | beam 5: PER / WER{cp} | training tokens/s | train time '
           f'| greedy words/s | beam-5 words/s | attention ({word}) |',
           '|---|---|---|' + ('---|' if penalty else '') + '---|---|---|---|---|']
  for name, r in results.items():
    g, b = r['greedy'], r['speed_beam5']
    cells = [VARIANTS[name][0], per_wer(g), per_wer(b)]
    if penalty:
      cells.append(per_wer(r['beam5_cp']))
    cells += [f'{r["bench"]["train_tokens_per_s"]:,.0f}', minutes(r['train_seconds']),
              f'{r["speed_greedy"]["sources_per_s"]:,.0f}', f'{b["sources_per_s"]:,.0f}', f'![{name}]({r["png"]})']
    lines.append('| ' + ' | '.join(cells) + ' |')
  commands = [f'- {VARIANTS[name][0]}: {command(r["train"]["args"])}' for name, r in results.items()]
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
