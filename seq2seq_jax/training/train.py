"""The training loop: data -> pmapped train step -> logs, periodic evaluation, checkpoints.

  seq2seq-jax train --config configs/reverse.py --workdir /tmp/reverse
"""

import json
import os
import time

import jax
import numpy as np

from seq2seq_jax import config as config_lib
from seq2seq_jax.data import pipeline, sources
from seq2seq_jax.decoding import Predictor
from seq2seq_jax.errors import CheckpointError, TrainingError
from seq2seq_jax.evaluation import evaluate, plotting
from seq2seq_jax.model import seq2seq
from seq2seq_jax.runs import checkpoint, workdir as workdir_lib
from seq2seq_jax.training import parallel, steps, writers
from seq2seq_jax.training.progress import Progress

# Keys that may differ when the same workdir is trained again (e.g. to train for longer).
RESUMABLE_CHANGES = ('train.num_steps', 'train.log_every', 'train.eval_every', 'train.checkpoint_every',
                     'train.keep_checkpoints', 'train.attention_plots',
                     'train.eval_examples', 'train.on_nonfinite', 'decode.batch_size', 'parallel.mode')


def _flat(cfg, prefix=''):
  out = {}
  for key, value in cfg.items():
    if hasattr(value, 'items'):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[prefix + key] = value
  return out


def check_same_run(workdir: str, cfg) -> None:
  """A workdir belongs to one experiment: a config that differs in more than RESUMABLE_CHANGES is refused."""
  if not os.path.isfile(workdir_lib.path(workdir, 'config.json')):
    return
  old, new = _flat(workdir_lib.load_config(workdir)), _flat(cfg)
  diff = [k for k in new if k not in RESUMABLE_CHANGES and old.get(k) != new[k]]
  if diff:
    k = diff[0]
    raise CheckpointError(f'{workdir} holds a run with another config: {k}={old.get(k)!r} there, {new[k]!r} '
                          f'now ({len(diff)} key(s) differ); use a new --workdir')


def prepare_data(cfg, workdir: str, log):
  """Loads and checks all data before training starts; builds (or reloads) the vocabularies."""
  train_pairs = sources.load_pairs(cfg, 'train')
  validation_pairs = sources.load_pairs(cfg, 'validation')
  if os.path.isfile(workdir_lib.path(workdir, 'vocab_source.json')):
    src_vocab, tgt_vocab = workdir_lib.load_vocabs(workdir)
  else:
    src_vocab, tgt_vocab = sources.build_vocabs(cfg, train_pairs)
  examples, _, report = sources.encode(cfg, train_pairs, src_vocab, tgt_vocab)
  sources.encode(cfg, validation_pairs, src_vocab, tgt_vocab)  # fail now on a bad validation file
  if report['unknown']:
    log(f'training data: {sum(report["unknown"].values())} unknown symbols mapped to UNK: '
        f'{dict(sorted(report["unknown"].items())[:10])}')
  if report['dropped_too_long']:
    log(f'training data: dropped {report["dropped_too_long"]} pairs longer than data.max_source_len / '
        f'max_target_len')
  log(f'data: {len(examples)} training pairs, {len(validation_pairs)} validation pairs; vocabularies: '
      f'{len(src_vocab)} source / {len(tgt_vocab)} target symbols')
  return examples, validation_pairs, src_vocab, tgt_vocab


def vocab_meta(src_vocab, tgt_vocab) -> dict:
  return {'vocab_source': src_vocab.fingerprint(), 'vocab_target': tgt_vocab.fingerprint()}


def restore_or_init(cfg, workdir: str, model, ckpt, examples, vocabs: dict, log):
  """The latest complete checkpoint of `workdir`, or a fresh state; returns (state, data_state, start step).

  Nothing in the workdir is written here: a checkpoint that does not fit is an error and stays as it is.
  """
  state = steps.init_state(model, cfg, jax.random.PRNGKey(cfg.seed), examples.batch(np.arange(1)))
  start = ckpt.latest_step()
  if start is None:
    return state, None, 0
  saved = ckpt.meta(start)
  for key, value in vocabs.items():
    if saved.get(key, value) != value:
      raise CheckpointError(f'{ckpt.directory}/{start}: was trained with another {key.split("_")[1]} vocabulary '
                            f'than {workdir}/{key}.json holds ({saved[key]} != {value})')
  out = ckpt.restore(start, state.params, steps.train_part(state))
  state, data_state = steps.join(out['params'], out['train']), out['data']
  log(f'resuming from the checkpoint at step {start} in {ckpt.directory}')
  return state, data_state, start


def train(cfg, workdir: str, log=print) -> dict:
  """Trains (or resumes) the run in `workdir`; returns the last validation metrics."""
  check_same_run(workdir, cfg)
  devices = jax.devices()
  config_lib.validate(cfg, num_devices=len(devices))
  examples, validation_pairs, src_vocab, tgt_vocab = prepare_data(cfg, workdir, log)
  vocabs = vocab_meta(src_vocab, tgt_vocab)
  model = seq2seq.build(cfg.model, len(src_vocab), len(tgt_vocab))
  os.makedirs(workdir, exist_ok=True)
  t = cfg.train
  metric_name, mode = config_lib.task_metric(cfg)
  ckpt = checkpoint.Checkpointer(workdir, keep=t.keep_checkpoints)
  state, data_state, start = restore_or_init(cfg, workdir, model, ckpt, examples, vocabs, log)
  if jax.process_index() == 0:  # one writer; the other processes read the same data and build the same vocab
    if start == 0:
      workdir_lib.save_vocabs(workdir, src_vocab, tgt_vocab)
      workdir_lib.save_config(workdir, cfg)
    workdir_lib.record_run_info(workdir, start)
  data_iter = iter(pipeline.train_stream(examples, cfg.data.batch_size, cfg.seed,
                                         rows=parallel.process_rows(cfg.data.batch_size)))
  if data_state is not None:
    data_iter.set_state(data_state)
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  log(f'model: {num_params:,} parameters; {len(devices)} {devices[0].platform} device(s) in '
      f'{jax.process_count()} process(es), {cfg.parallel.mode}')

  writer = writers.MetricWriter(workdir, enabled=jax.process_index() == 0)
  dp = parallel.DataParallel(model, cfg)
  state = dp.replicate(state)
  progress = Progress(t.num_steps, start, enabled=jax.process_index() == 0)
  pending, clock, last_eval, eval_step = [], time.perf_counter(), {}, None
  best = _best_so_far(workdir, metric_name)
  try:
    for step in range(start + 1, t.num_steps + 1):
      batch = next(data_iter)  # every process follows the same batch plan and builds only its own rows
      batch.pop('index')
      state, m = dp.step(state, batch)
      pending.append(m)
      if step % t.log_every == 0 or step == t.num_steps:
        jax.block_until_ready(pending[-1])  # the clock must see the device's work, not its dispatch
        logged = _log_train([dp.metrics(m) for m in pending], step, time.perf_counter() - clock, t.on_nonfinite)
        writer.write(step, 'train', logged)
        progress.update(step, logged['loss'], logged['tokens_per_s'])
        pending, clock = [], time.perf_counter()
      if step % t.eval_every == 0 or step == t.num_steps:
        predictor = Predictor(cfg, dp.unreplicate(state).params, src_vocab, tgt_vocab)
        last_eval, eval_step = evaluate.evaluate(predictor, validation_pairs, t.eval_examples), step
        value = last_eval[metric_name]
        if best is None or (value < best[1] if mode == 'min' else value > best[1]):
          best = (step, value)
        last_eval.update({f'best_{metric_name}': best[1], 'best_step': best[0]})
        writer.write(step, 'validation', last_eval)
        if t.attention_plots and jax.process_index() == 0:
          sources_to_plot = [s for s, _ in sources.group_references(validation_pairs)[:t.attention_plots]]
          plotting.write_attention_pngs(predictor, sources_to_plot, workdir_lib.path(workdir, 'attention'),
                                        f'step-{step}')
        progress.write(f'step {step}: validation ' + ', '.join(f'{k} {v:.4g}' for k, v in last_eval.items()))
        clock = time.perf_counter()
      if step % t.checkpoint_every == 0 or step == t.num_steps:
        evaluated = {'validation': last_eval} if eval_step == step else {}  # what picks the best checkpoint
        host = dp.unreplicate(state)
        ckpt.save(step, host.params, steps.train_part(host), data_iter.get_state(),
                  {'step': step, **vocabs, **evaluated}, metric_name, mode)
        clock = time.perf_counter()
  finally:  # ends the bar's line: whatever is printed next starts on its own line
    progress.close()
  writer.close()
  ckpt.close()
  log(f'process {jax.process_index()}: finished at step {t.num_steps}; parameters fingerprint '
      f'{checkpoint.fingerprint(dp.unreplicate(state).params)}')
  return last_eval


def _best_so_far(workdir: str, metric_name: str) -> tuple[int, float] | None:
  """(step, value) of the best validation result logged so far in this workdir (for resumed runs)."""
  path = workdir_lib.path(workdir, 'metrics.jsonl')
  if not os.path.isfile(path):
    return None
  last = None
  with open(path, encoding='utf-8') as f:
    for line in f:
      row = json.loads(line)
      if row.get('kind') == 'validation' and 'best_step' in row:
        last = (row['best_step'], row[f'best_{metric_name}'])
  return last


def _log_train(host: list, step: int, seconds: float, on_nonfinite: str) -> dict:
  """Sums the per-step metrics of one log interval into the logged figures."""
  bad = [step - len(host) + 1 + i for i, m in enumerate(host) if m['nonfinite']]
  if bad and on_nonfinite == 'stop':
    raise TrainingError(f'non-finite loss or gradient at step {bad[0]} (update skipped; the last checkpoint is '
                        f'intact); set train.on_nonfinite=skip to skip such updates and go on')
  total = {k: float(sum(m[k] for m in host)) for k in ('loss_sum', 'tokens', 'correct', 'src_tokens')}
  return {'loss': total['loss_sum'] / max(total['tokens'], 1.0),
          'token_accuracy': 100.0 * total['correct'] / max(total['tokens'], 1.0),
          'tokens_per_s': (total['tokens'] + total['src_tokens']) / max(seconds, 1e-9),
          'steps_per_s': len(host) / max(seconds, 1e-9),
          'grad_norm': float(host[-1]['grad_norm']), 'lr': float(host[-1]['lr']),
          'tf_ratio': float(host[-1]['tf_ratio']), 'skipped_updates': len(bad), **_aux_losses(host)}


def _aux_losses(host: list) -> dict:
  """The auxiliary attention losses of one log interval (those the run has): coverage per target token, guided
  per real (source, target) pair, and the guided loss's weight at the last step."""
  out = {}
  if 'coverage_loss_sum' in host[-1]:
    out['coverage_loss'] = (float(sum(m['coverage_loss_sum'] for m in host))
                            / max(float(sum(m['tokens'] for m in host)), 1.0))
  if 'guided_loss_sum' in host[-1]:
    out['guided_loss'] = (float(sum(m['guided_loss_sum'] for m in host))
                          / max(float(sum(m['guided_pairs'] for m in host)), 1.0))
    out['guided_weight'] = float(host[-1]['guided_weight'])
  return out
