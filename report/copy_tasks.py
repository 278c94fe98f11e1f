"""The copy comparison of the README: the greeting and dates tasks trained with and without the pointer-generator's
copy path, same config and budget otherwise, and their test exact match.

  python report/copy_tasks.py                 # four trainings (a few minutes each on 2 cores), then the table

For each task and each of model.copy = true / false it runs (`python -m seq2seq_jax ...`, echoed to stderr):
  train  --config configs/TASK.py --workdir ROOT/TASK-copy|TASK-nocopy [--config.model.copy=false]
  eval   --split test                 greedy: exact match, PER / WER (the test split holds names / dates that
                                      never occur in training)
  eval   --split test --beam 5
Resumable like report/attention_kinds.py (results under WORKDIR/report/, see report/common.py).
Environment: COPY_ROOT (default workdirs), COPY_OVERRIDES (extra --config.KEY=VALUE for every training).
"""

import os
import shlex

from common import command, minutes, result, train, training_speed

TASKS = {'greeting': 'greeting (unseen names)', 'dates': 'dates (unseen dates, 20 locales)'}


def run(task: str, copy: bool, root: str, extra: list[str]) -> dict:
  workdir = os.path.join(root, f'{task}-{"copy" if copy else "nocopy"}')
  args = ['train', '--config', f'configs/{task}.py', '--workdir', workdir,
          *([] if copy else ['--config.model.copy=false']), *extra]
  out = {'train': train(workdir, args),
         'greedy': result(workdir, 'eval_greedy.json', 'eval', '--workdir', workdir, '--split', 'test'),
         'beam5': result(workdir, 'eval_beam5.json', 'eval', '--workdir', workdir, '--split', 'test', '--beam', '5')}
  out['train_seconds'] = training_speed(workdir)[1]
  return out


def main() -> None:
  root = os.environ.get('COPY_ROOT', 'workdirs')
  extra = shlex.split(os.environ.get('COPY_OVERRIDES', ''))
  results = {(task, copy): run(task, copy, root, extra) for task in TASKS for copy in (True, False)}
  lines = ['| task | copy | test exact match, greedy | beam 5 | train time |', '|---|---|---|---|---|']
  for (task, copy), r in results.items():
    lines.append(f'| {TASKS[task]} | {"yes" if copy else "no"} | {r["greedy"]["exact_match"]:.1f} % | '
                 f'{r["beam5"]["exact_match"]:.1f} % | {minutes(r["train_seconds"])} |')
  lines.append('')
  lines += [f'- {command(r["train"]["args"])}' for r in results.values()]
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
