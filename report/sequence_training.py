"""The sequence-training table of the README: a cross-entropy model fine-tuned on the task's cost with minimum risk
training (MRT) and self-critical training (SCST), test figures before and after, greedy and beam 5.

  python report/sequence_training.py     # G2P: needs ROOT/g2p-seed0 (report/seeds.py or `make train`'s run)

Fine-tunings (`train.init_from`: the parent's parameters, a fresh optimizer) of FINETUNE_STEPS steps at a
constant learning rate (1e-4 unless the variant says otherwise), each in its own workdir ROOT/TASK-NAME; the
variants are in VARIANTS below. For G2P the cost is the edit distance (the task's), for addition 0-1 (exact
match). Commands (`python -m seq2seq_jax ...`, echoed to stderr; results kept under WORKDIR/report/, see
report/common.py):
  train  --config configs/TASK.py --workdir ROOT/TASK-NAME --config.train.init_from=PARENT [variant] [budget]
  eval   --split test [--beam 5]              before (the parent) and after (each fine-tuning)
The addition parent is trained first with the config's own budget (ROOT/addition, ~8000 steps).
Environment: SEQ_ROOT (default workdirs), SEQ_TASKS (default g2p_cmudict,addition), SEQ_STEPS (default: per task
below), SEQ_VARIANTS (default: all).
"""

import os

from common import command, minutes, per_wer, result, train, training_speed

# task -> (config, parent workdir name, fine-tuning steps, the metric column)
TASKS = {'g2p_cmudict': ('configs/g2p_cmudict_v1.py', 'g2p-seed0', 500, 'wer'),
         'addition': ('configs/addition.py', 'addition', 300, 'exact_match')}
# name -> (what it is, its overrides[, overrides placed after FINETUNE, e.g. another learning rate])
VARIANTS = {
    'mrt': ('MRT, 4 samples, α = 1', ['--config.train.objective=mrt']),
    'mrt-beam': ('MRT, 4-best of a beam of 4, α = 1', ['--config.train.objective=mrt',
                                                       '--config.train.candidates=beam']),
    'scst': ('SCST, 4 samples, greedy baseline', ['--config.train.objective=scst']),
    'mrt-mix': ('MRT, 4 samples + the reference, α = 1, half cross-entropy',
                ['--config.train.objective=mrt', '--config.train.mrt_reference=true',
                 '--config.train.xent_weight=0.5']),
    'xent': ('cross-entropy only (the control)', ['--config.train.objective=xent']),
    'xent-lr3e-5': ('cross-entropy only, lr 3e-5 (the control)', ['--config.train.objective=xent'],
                    ['--config.train.learning_rate=3e-5']),
    'mrt-lr3e-5': ('MRT, 4 samples, α = 1, lr 3e-5', ['--config.train.objective=mrt'],
                   ['--config.train.learning_rate=3e-5']),
    'xent-cosine': ('cross-entropy only, lr 1e-4 → 0 (cosine), label smoothing 0.1 (the control)',
                    ['--config.train.objective=xent'],
                    ['--config.train.schedule=cosine', '--config.train.label_smoothing=0.1']),
    'mrt-cosine': ('MRT, 4 samples, α = 1, lr 1e-4 → 0 (cosine), + 0.3 cross-entropy with label smoothing 0.1',
                   ['--config.train.objective=mrt', '--config.train.xent_weight=0.3'],
                   ['--config.train.schedule=cosine', '--config.train.label_smoothing=0.1']),
}
FINETUNE = ['--config.train.learning_rate=1e-4', '--config.train.schedule=constant', '--config.train.warmup_steps=0',
            '--config.train.label_smoothing=0']


def evaluate(workdir: str) -> dict:
  return {'greedy': result(workdir, 'eval_greedy.json', 'eval', '--workdir', workdir, '--split', 'test'),
          'beam5': result(workdir, 'eval_beam5.json', 'eval', '--workdir', workdir, '--split', 'test', '--beam', '5')}


def run_task(task: str, root: str, names: list[str], steps_override: str) -> list[str]:
  config, parent_name, steps, metric = TASKS[task]
  steps = int(steps_override or steps)
  parent = os.path.join(root, parent_name)
  if task == 'addition':
    train(parent, ['train', '--config', config, '--workdir', parent])
  rows, commands = {'cross-entropy model (the parent)': evaluate(parent)}, []
  for name in names:
    workdir = os.path.join(root, f'{task}-{name}')
    every = max(steps // 4, 1)
    _, before, *after = VARIANTS[name]
    args = ['train', '--config', config, '--workdir', workdir, f'--config.train.init_from={parent}', *before,
            *FINETUNE, *(after[0] if after else []), f'--config.train.num_steps={steps}',
            f'--config.train.eval_every={every}', f'--config.train.checkpoint_every={every}']
    commands.append(f'- {VARIANTS[name][0]}: {command(train(workdir, args)["args"])}')
    rows[f'+ {VARIANTS[name][0]}, {steps} steps ({minutes(training_speed(workdir)[1])})'] = evaluate(workdir)
  if metric == 'wer':
    head, cell = 'PER / WER', per_wer
  else:
    head, cell = 'exact match', lambda r: f'{r["exact_match"]:.2f} %'
  lines = [f'**{task}** (test)', '', f'| model | greedy: {head} | beam 5: {head} |', '|---|---|---|']
  lines += [f'| {name} | {cell(r["greedy"])} | {cell(r["beam5"])} |' for name, r in rows.items()]
  return lines + [''] + commands + ['']


def main() -> None:
  root = os.environ.get('SEQ_ROOT', 'workdirs')
  tasks = [t for t in os.environ.get('SEQ_TASKS', ','.join(TASKS)).split(',') if t]
  names = [n for n in os.environ.get('SEQ_VARIANTS', ','.join(VARIANTS)).split(',') if n]
  unknown = sorted(set(tasks) - set(TASKS)) + sorted(set(names) - set(VARIANTS))
  if unknown:
    raise SystemExit(f'unknown task(s) or variant(s): {", ".join(unknown)}')
  lines = []
  for task in tasks:
    lines += run_task(task, root, names, os.environ.get('SEQ_STEPS', ''))
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
