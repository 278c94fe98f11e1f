"""The README's CMUdict table: the best single-model recipe and an ensemble, test PER / WER greedy and beam 5.

  python report/cmudict.py       # trains what is missing: the best recipe (~2 h on 2 cores) and the candidates

It runs (`python -m seq2seq_jax ...`, echoed to stderr; results kept under WORKDIR/report/, see report/common.py):
  train    --config configs/g2p_cmudict_best.py --workdir ROOT/g2p-best          (resumes from its checkpoints)
  average  --workdir ROOT/g2p-best --last 3
  eval     --workdir ROOT/g2p-best --split validation|test --step best|averaged [--beam 5]
The ensemble's candidates are every G2P model the reports train with cross-entropy: the best recipe, the three
seeds of report/seeds.py and the attention kinds of report/attention_kinds.py except `additive` (the same run as
seed 0), trained here with those scripts' arguments when ROOT lacks them. Each is decoded alone on the whole
validation split; the ensemble is the k candidates with the lowest validation WER, for the k (2..all) whose
ensemble has the lowest validation WER — the test split is decoded only by the chosen ensemble:
  eval     --workdir A --workdir B ... --split validation        for every k
  eval     --workdir A --workdir B ... --split test [--beam 5]   the chosen k
The ensemble's members use their best checkpoints (`--step best`, the default).
Environment:
  CMUDICT_ROOT        where all the workdirs are, relative to the repository root (default workdirs)
  CMUDICT_OVERRIDES   extra `--config.KEY=VALUE` arguments for every training, e.g. a smoke run (its own ROOT):
                      CMUDICT_OVERRIDES="--config.train.num_steps=20 --config.train.checkpoint_every=5
                      --config.train.eval_examples=50"   (3 checkpoints or more, for the average of 3)
"""

import json
import os
import shlex

import attention_kinds
import seeds
from common import ROOT_DIR, command, minutes, per_wer, result, train, training_speed

BEST = 'configs/g2p_cmudict_best.py'
AVERAGE_LAST = 3
BEAMS = (('greedy', []), ('beam5', ['--beam', '5']))


def best_recipe(root: str, extra: list[str]) -> dict:
  workdir = os.path.join(root, 'g2p-best')
  out = {'workdir': workdir, 'train': train(workdir, ['train', '--config', BEST, '--workdir', workdir, *extra]),
         'average': result(workdir, f'average{AVERAGE_LAST}.json', 'average', '--workdir', workdir, '--last',
                           str(AVERAGE_LAST))}
  for step in ('best', 'averaged'):
    out[step] = {'validation': result(workdir, f'validation_{step}.json', 'eval', '--workdir', workdir, '--split',
                                      'validation', '--step', step)}
    for name, beam in BEAMS:
      out[step][name] = result(workdir, f'test_{step}_{name}.json', 'eval', '--workdir', workdir, '--split', 'test',
                               '--step', step, *beam)
  with open(os.path.join(ROOT_DIR, workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    rows = [r for r in map(json.loads, f) if r.get('kind') == 'validation']
  out['curve'] = [(r['step'], r['per'], r['wer']) for r in rows]
  out['curve_items'] = rows[-1]['num_items'] if rows else 0
  out['train_seconds'] = training_speed(workdir)[1]
  return out


def candidates(root: str, best_workdir: str, extra: list[str]) -> dict[str, str]:
  """name -> workdir of every candidate member, trained first unless its report records the same arguments."""
  out = {'best': best_workdir}
  for seed in seeds.SEEDS:
    out[f'seed{seed}'] = seeds.workdir_of(root, seed)
    train(out[f'seed{seed}'], seeds.train_args(root, seed, extra))
  for name in attention_kinds.VARIANTS:
    if name != 'additive':
      out[name] = attention_kinds.workdir_of(root, name)
      train(out[name], attention_kinds.train_args(root, name, extra))
  return out


def ensemble(root: str, members: dict[str, str]) -> dict:
  alone = {name: result(workdir, 'validation_greedy.json', 'eval', '--workdir', workdir, '--split', 'validation')
           for name, workdir in members.items()}
  order = sorted(members, key=lambda name: alone[name]['wer'])  # (stable: ties keep the candidates' order)
  folder = os.path.join(root, 'g2p-cmudict-ensemble')  # only its report/ folder
  flags_of = lambda names: [a for name in names for a in ('--workdir', members[name])]  # noqa: E731
  tried = {k: result(folder, f'validation_{"+".join(order[:k])}.json', 'eval', *flags_of(order[:k]), '--split',
                     'validation') for k in range(2, len(order) + 1)}
  k = min(tried, key=lambda k: (tried[k]['wer'], k))
  names, flags = order[:k], flags_of(order[:k])
  test = {name: result(folder, f'test_{"+".join(names)}_{name}.json', 'eval', *flags, '--split', 'test', *beam)
          for name, beam in BEAMS}
  return {'alone': alone, 'order': order, 'tried': tried, 'k': k, 'names': names, 'test': test, 'flags': flags}


def main() -> None:
  root = os.environ.get('CMUDICT_ROOT', 'workdirs')
  extra = shlex.split(os.environ.get('CMUDICT_OVERRIDES', ''))
  best = best_recipe(root, extra)
  ens = ensemble(root, candidates(root, best['workdir'], extra))
  lines = ['| model | test greedy: PER / WER | test beam 5: PER / WER | validation greedy WER |', '|---|---|---|---|']
  for step, what in (('best', 'its best checkpoint'), ('averaged', f'mean of its last {AVERAGE_LAST} checkpoints')):
    r = best[step]
    lines.append(f'| best recipe, {what} | {per_wer(r["greedy"])} | {per_wer(r["beam5"])} | '
                 f'{r["validation"]["wer"]:.2f} |')
  lines.append(f'| ensemble of {ens["k"]}: {", ".join(ens["names"])} | {per_wer(ens["test"]["greedy"])} | '
               f'{per_wer(ens["test"]["beam5"])} | {ens["tried"][ens["k"]]["wer"]:.2f} |')
  step = min(('best', 'averaged'), key=lambda step: best[step]['validation']['wer'])
  eval_args = ['eval', '--workdir', best['workdir'], '--split', 'test', *(['--step', step] if step != 'best' else [])]
  lines += ['', f'Best recipe: {minutes(best["train_seconds"])} in training steps (metrics.jsonl). Validation '
                f'(the first {best["curve_items"]:,} pairs, greedy) PER / WER by step: '
                + ', '.join(f'{s}: {p:.2f} / {w:.1f}' for s, p, w in best['curve']) + '.',
            'Candidates alone, validation greedy WER: '
            + ', '.join(f'{n} {ens["alone"][n]["wer"]:.2f}' for n in ens['order']) + '.',
            'Ensembles of the k best, validation greedy WER: '
            + ', '.join(f'{k}: {r["wer"]:.2f}' for k, r in ens['tried'].items()) + '.', '',
            f'- best recipe: {command(best["train"]["args"])}, then {command(eval_args)} [--beam 5] (the step with '
            f'the lower validation WER; the mean of the last {AVERAGE_LAST}: `seq2seq-jax average --workdir '
            f'{best["workdir"]} --last {AVERAGE_LAST}`, then `--step averaged`)',
            f'- ensemble: {command(["eval", *ens["flags"], "--split", "test"])} [--beam 5]']
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
