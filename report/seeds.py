"""The ensemble and export figures of the README: three default G2P models (seeds 0, 1, 2), each one's test PER /
WER and the ensemble's, greedy and beam 5, with decode speed; the exported greedy decoder next to `predict`.

  python report/seeds.py                 # three `make train`-sized trainings (~17 min each on 2 quiet cores)

It runs (`python -m seq2seq_jax ...`, echoed to stderr; results kept under WORKDIR/report/, see report/common.py):
  train         --config configs/g2p_cmudict_v1.py --workdir ROOT/g2p-seedS --config.seed=S      for S = 0, 1, 2
  decode-speed  --split test [--beam 5]                  each model: PER / WER and words/s (median of 3 passes
                                                         after a compiling pass)
  decode-speed  --workdir A --workdir B --workdir C ...  the ensemble (log-probabilities averaged at each step)
  export        --workdir ROOT/g2p-seed0 --output ROOT/g2p-seed0/report/g2p.s2s.npz
and times, three times each on the test split's words (one per line), the whole command of
  python scripts/run_exported.py ARTEFACT < words        (jax and numpy only)
  python -m seq2seq_jax predict --workdir ROOT/g2p-seed0 --input words
(start-up, loading and compiling included: the exported programs are compiled when loaded, predict's come from
the on-disk compilation cache after its first run), and checks that the two print the same lines.
Environment: SEEDS_ROOT (default workdirs), SEEDS_OVERRIDES (extra --config.KEY=VALUE for every training).
"""

import json
import os
import shlex
import statistics
import sys

from common import ROOT_DIR, command, last_json, per_wer, report_dir, result, run, train, cli

CONFIG = 'configs/g2p_cmudict_v1.py'
SEEDS = (0, 1, 2)


def workdir_of(root: str, seed: int) -> str:
  return os.path.join(root, f'g2p-seed{seed}')


def train_args(root: str, seed: int, extra: tuple[str, ...] = ()) -> list[str]:
  """The `train` arguments of seed `seed`'s run (also how report/cmudict.py finds or makes it)."""
  return ['train', '--config', CONFIG, '--workdir', workdir_of(root, seed), f'--config.seed={seed}', *extra]


def test_words(workdir: str) -> str:
  """The test split's distinct sources, one per line, in a file under WORKDIR/report (relative to the root)."""
  path = os.path.join(workdir, 'report', 'test_words.txt')
  if not os.path.isfile(os.path.join(ROOT_DIR, path)):
    sys.path.insert(0, ROOT_DIR)
    from seq2seq_jax.data import sources
    from seq2seq_jax.runs import workdir as workdir_lib
    cfg = workdir_lib.load_config(os.path.join(ROOT_DIR, workdir))
    words = [source for source, _ in sources.group_references(sources.load_pairs(cfg, 'test'))]
    with open(os.path.join(ROOT_DIR, path), 'w', encoding='utf-8') as f:
      f.write(''.join(w + '\n' for w in words))
  return path


def export_speed(workdir: str) -> dict:
  exported = result(workdir, 'export.json', 'export', '--workdir', workdir, '--output',
                    os.path.join(workdir, 'report', 'g2p.s2s.npz'))
  path = os.path.join(report_dir(workdir), 'export_speed.json')
  if not os.path.isfile(path):
    words = test_words(workdir)
    out = {name: os.path.join(report_dir(workdir), f'{name}.txt') for name in ('exported', 'predict')}
    times = {'exported': [], 'predict': []}
    for _ in range(3):
      times['exported'].append(run([sys.executable, 'scripts/run_exported.py', exported['output']],
                                   output=out['exported'], stdin=words))
      times['predict'].append(cli('predict', '--workdir', workdir, '--input', words, output=out['predict']))
    outputs = {}
    for name, file in out.items():
      with open(file, encoding='utf-8') as f:
        outputs[name] = f.read().splitlines()
    same = sum(a == b for a, b in zip(outputs['exported'], outputs['predict']))
    lines = len(outputs['predict'])
    with open(path, 'w', encoding='utf-8') as f:
      json.dump({'words': lines, 'same_lines': same, 'bytes': exported['bytes'], 'seconds': times,
                 'words_per_s': {k: lines / statistics.median(v) for k, v in times.items()}}, f)
  return last_json(path)


def main() -> None:
  root = os.environ.get('SEEDS_ROOT', 'workdirs')
  extra = shlex.split(os.environ.get('SEEDS_OVERRIDES', ''))
  workdirs = [workdir_of(root, seed) for seed in SEEDS]
  rows, trains = {}, []
  for seed, workdir in zip(SEEDS, workdirs):
    trains.append(train(workdir, train_args(root, seed, extra)))
    rows[f'seed {seed}'] = [result(workdir, f'speed_{name}.json', 'decode-speed', '--workdir', workdir, '--split',
                                   'test', *beam) for name, beam in (('greedy', []), ('beam5', ['--beam', '5']))]
  members = [arg for workdir in workdirs for arg in ('--workdir', workdir)]
  ensemble = os.path.join(root, 'g2p-ensemble')  # only its report/ folder
  rows['ensemble of the three'] = [result(ensemble, f'speed_{name}.json', 'decode-speed', *members, '--split', 'test',
                                          *beam) for name, beam in (('greedy', []), ('beam5', ['--beam', '5']))]
  lines = ['| model | greedy: PER / WER | beam 5: PER / WER | greedy words/s | beam-5 words/s |',
           '|---|---|---|---|---|']
  for name, (greedy, beam) in rows.items():
    lines.append(f'| {name} | {per_wer(greedy)} | {per_wer(beam)} | {greedy["sources_per_s"]:,.0f} | '
                 f'{beam["sources_per_s"]:,.0f} |')
  speed = export_speed(workdirs[0])
  lines += ['', f'Export of seed 0: {speed["bytes"] / 2**20:.1f} MiB; {speed["words"]:,} test words, whole command '
                f'(median of 3): exported greedy {speed["words_per_s"]["exported"]:,.0f} words/s, predict '
                f'{speed["words_per_s"]["predict"]:,.0f} words/s; {speed["same_lines"]:,} of {speed["words"]:,} '
                f'lines the same.', '']
  lines += [f'- {command(t["args"])}' for t in trains]
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
