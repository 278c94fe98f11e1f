"""Tools for comparing and improving finished runs: `info` (what a checkpoint is) and `average` (of the last K).

  seq2seq-jax info --workdir DIR [--step latest|best|N]
  seq2seq-jax average --workdir DIR --last K
  seq2seq-jax decode-speed --workdir DIR [--split test] [--beam K]
"""

import time

import jax

from seq2seq_jax import config as config_lib
from seq2seq_jax.errors import CheckpointError
from seq2seq_jax.runs import checkpoint, workdir as workdir_lib


def info(workdir: str, step: str = 'best') -> dict:
  """Step, parameter count, fingerprint, best metric so far, saved steps and the config of a checkpoint."""
  run = workdir_lib.open_run(workdir, step)
  metric, mode = config_lib.task_metric(run.cfg)
  main = checkpoint.Checkpointer(workdir, read_only=True)
  try:
    best = main.best(metric, mode)
    return {'workdir': workdir, 'step': run.step, 'checkpoint': run.checkpoint,
            'parameters': int(sum(x.size for x in jax.tree.leaves(run.params))),
            'fingerprint': checkpoint.fingerprint(run.params), 'saved_steps': main.all_steps(),
            'metric': metric, 'validation': run.meta.get('validation', {}),
            'best': {'step': best[0], metric: best[1]} if best is not None else None,
            'vocab_source': run.src_vocab.fingerprint(), 'vocab_target': run.tgt_vocab.fingerprint(),
            'averaged_from': run.meta.get('averaged_from'), 'config': run.cfg.to_dict(),
            'tracker': run.meta.get('tracker')}  # early stopping / reduce-on-plateau state at that step
  finally:
    main.close()


def average(workdir: str, last: int) -> dict:
  """Averages the parameters of the last `last` checkpoints into DIR/averaged/<newest step>."""
  run = workdir_lib.open_run(workdir, 'latest')
  ckpt = checkpoint.Checkpointer(workdir, read_only=True)
  steps_saved = ckpt.all_steps()
  if last < 1 or last > len(steps_saved):
    ckpt.close()
    raise CheckpointError(f'{workdir}: --last {last} but {len(steps_saved)} checkpoint(s) are kept '
                          f'({", ".join(map(str, steps_saved))}); raise train.keep_checkpoints to keep more')
  chosen = steps_saved[-last:]
  try:
    params = [ckpt.restore(s, run.params)['params'] for s in chosen]
  finally:
    ckpt.close()
  averaged = checkpoint.average_params(params)
  out = checkpoint.Checkpointer(workdir, folder='averaged', keep=1)
  meta = {'step': run.step, 'averaged_from': chosen, 'vocab_source': run.src_vocab.fingerprint(),
          'vocab_target': run.tgt_vocab.fingerprint()}
  out.save(run.step, averaged, meta=meta)
  out.close()
  return {'workdir': workdir, 'averaged_from': chosen, 'saved_as': f'{out.directory}/{run.step}',
          'fingerprint': checkpoint.fingerprint(averaged)}


def decode_speed(predictor, references: list[tuple[str, list[str]]], options, repeats: int = 3,
                 prefixes: tuple[str, list[str]] | None = None) -> dict:
  """Decodes every source of `references` (after one untimed pass that compiles) and scores the output;
  `prefixes`: (where, lines), one forced output prefix per source (see evaluate.decode_sources).

  Returns sources per second (median of `repeats` timed passes) with PER/WER of the decoded output.
  """
  from seq2seq_jax.evaluation import evaluate
  options = predictor.options(options)
  where, lines = prefixes or ('prefixes', None)
  inputs = predictor.inputs([s for s, _ in references], 'eval', lenient=True, prefixes=lines, prefix_where=where)
  start = time.perf_counter()
  results = predictor.decode_ids(options=options, **inputs)
  first = time.perf_counter() - start
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    predictor.decode_ids(options=options, **inputs)
    seconds.append(time.perf_counter() - start)
  median = sorted(seconds)[len(seconds) // 2]
  hyps = [r['symbols'] for r in predictor.with_symbols(results, inputs['extended'])]
  rates = evaluate.score(predictor, hyps, references)
  controls = {'sample': options.sample, 'top_p': options.top_p, 'min_len': options.min_len,
              'no_repeat_ngram': options.no_repeat_ngram, 'prefixes': prefixes[0] if prefixes else None}
  return {'sources': len(references), 'beam': options.beam, 'alpha': options.alpha,
          'coverage_penalty': options.coverage_penalty, **controls,
          'batch_size': options.batch_size or predictor.cfg.decode.batch_size,
          'first_pass_s': round(first, 3), 'seconds': [round(x, 3) for x in seconds],
          'sources_per_s': round(len(references) / median, 1), 'per': rates['per'], 'wer': rates['wer']}
