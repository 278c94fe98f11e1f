"""The training loop: data -> pmapped train step -> logs, periodic evaluation, checkpoints.

  seq2seq-jax train --config configs/reverse.py --workdir /tmp/reverse

What a run guarantees (README, "Checkpoints and reproducibility"): one run per workdir (runs/lock.py); it
resumes from the newest checkpoint whose checksums verify, moving damaged newer ones aside with a warning;
SIGTERM or a first Ctrl-C finish the current step, save a checkpoint and stop (training/signals.py), all
processes of a multi-process run at the same step; a failed write (full disk, read-only file system) is a
one-line error that leaves the earlier checkpoints intact; a run that fails before training leaves the
workdir as it was.
"""

import json
import os
import signal
import time

import jax
import numpy as np

from seq2seq_jax import config as config_lib
from seq2seq_jax.data import sources
from seq2seq_jax.decoding import Predictor
from seq2seq_jax.errors import Interrupted, Seq2SeqError, TrainingError, WorkdirError
from seq2seq_jax.evaluation import curves, evaluate, plotting
from seq2seq_jax.model import seq2seq
from seq2seq_jax.runs import checkpoint, lock as lock_lib, parent as parent_lib, workdir as workdir_lib
from seq2seq_jax.training import distributed, objectives, parallel, setup, signals, steps, stopping, writers
from seq2seq_jax.training.progress import Progress

def _on_process_0(workdir: str, fn):
  """Runs `fn` in process 0 only and lets every process know whether it failed, so that all of them stop with
  an error instead of the others waiting for process 0 in the next collective."""
  error, result = None, None
  if jax.process_index() == 0:
    try:
      result = fn()
    except (Seq2SeqError, OSError) as e:
      error = e
  if distributed.broadcast(error is None):
    return result
  if error is None:
    raise WorkdirError(f'{workdir}: process 0 stopped with an error (see its output)')
  if isinstance(error, OSError):
    raise workdir_lib.write_error(error, workdir) or error
  raise error


def _take_lock(workdir: str, log) -> lock_lib.WorkdirLock | None:
  """Creates the workdir and takes its lock (process 0; see runs/lock.py for the rule)."""
  def take():
    os.makedirs(workdir, exist_ok=True)
    lock = lock_lib.WorkdirLock(workdir, warn=log)
    lock.acquire()
    return lock
  lock = _on_process_0(workdir, take)
  os.makedirs(workdir, exist_ok=True)
  return lock


def train(cfg, workdir: str, log=print) -> dict:
  """Trains (or resumes) the run in `workdir`; returns the last validation metrics.

  Everything that can be checked before training is checked before the workdir is touched: the workdir itself,
  another run holding it, the config and all data. Raises `Interrupted` after saving on SIGTERM / Ctrl-C.
  """
  workdir_lib.check_writable(workdir)
  _on_process_0(workdir, lambda: lock_lib.check_free(workdir))  # fail fast; the lock itself is taken below
  setup.check_same_run(workdir, cfg)
  devices = jax.devices()
  config_lib.validate(cfg, num_devices=len(devices))
  from_parent = cfg.train.init_from and not checkpoint.saved_steps(workdir)  # (a resumed run needs it no longer)
  if from_parent:
    parent_lib.check_model(cfg)
  examples, validation_pairs, src_vocab, tgt_vocab = setup.prepare_data(cfg, workdir, log)
  parallel.batch_rows(cfg, examples)  # a token budget too small for a length bucket fails here
  if from_parent:
    parent_lib.check_vocabs(cfg, setup.vocab_meta(src_vocab, tgt_vocab))
  model = seq2seq.build(cfg.model, len(src_vocab), len(tgt_vocab), cfg.data.shared_vocab)
  created, done = not os.path.isdir(workdir), False
  lock = _take_lock(workdir, log)
  try:
    setup.check_same_run(workdir, cfg)  # again: a run that held the lock until now may have started this workdir
    result = _train(cfg, workdir, model, examples, validation_pairs, src_vocab, tgt_vocab, lock, log)
    done = True
    return result
  except OSError as e:
    error = workdir_lib.write_error(e, workdir)
    if error is None:
      raise
    raise error from None
  finally:
    if lock is not None:
      lock.release()
    if created and not done:
      for folder in (os.path.join(workdir, 'checkpoints'), workdir):  # only if nothing was written
        try:
          os.rmdir(folder)
        except OSError:
          pass


def _train(cfg, workdir: str, model, examples, validation_pairs, src_vocab, tgt_vocab, lock, log) -> dict:
  """`train` once the workdir is locked."""
  t, first = cfg.train, jax.process_index() == 0
  vocabs = setup.vocab_meta(src_vocab, tgt_vocab)
  ckpt = checkpoint.Checkpointer(workdir, keep=t.keep_checkpoints, warn=log)
  try:
    if first:
      ckpt.remove_leftovers()
    state, data_state, start, meta, parent = setup.restore_or_init(cfg, workdir, model, ckpt, examples, vocabs, log)
    if first:  # one writer; the other processes read the same data and build the same vocab
      if start == 0:
        workdir_lib.save_vocabs(workdir, src_vocab, tgt_vocab)
        workdir_lib.save_config(workdir, cfg)
      workdir_lib.record_run_info(workdir, start, warn=log, parent=parent)
      later, damaged = writers.keep_rows_until(workdir_lib.path(workdir, 'metrics.jsonl'), start)
      if later:
        log(f'metrics.jsonl: {later} row(s) logged after step {start} are dropped and will be logged again')
      if damaged:
        log(f'warning: metrics.jsonl: dropped {damaged} damaged line(s)')
    data_iter = iter(parallel.train_stream(cfg, examples))
    if data_state is not None:
      data_iter.set_state(data_state)
    writer = writers.MetricWriter(workdir, enabled=first)
    try:
      with signals.StopSignals(on_abort=lock.release if lock is not None else None) as stop:
        num_params, devices = sum(x.size for x in jax.tree.leaves(state.params)), jax.devices()
        log(f'model: {num_params:,} parameters; {len(devices)} {devices[0].platform} device(s) in '
            f'{jax.process_count()} process(es), {cfg.parallel.mode}')  # from here on, signals stop cleanly
        if t.accumulate > 1 or cfg.data.batch_tokens:
          log(f'batches: {_describe_batches(cfg)}')
        state, last_eval, end = _loop(cfg, workdir, model, state, start, meta, data_iter, validation_pairs,
                                      src_vocab, tgt_vocab, ckpt, writer, stop, lock, vocabs)
    finally:
      writer.close()
  finally:
    ckpt.close()
  if first:
    _plot_metrics(workdir, log)
  log(f'process {jax.process_index()}: finished at step {end}; parameters fingerprint '
      f'{checkpoint.fingerprint(state.params)}')
  return last_eval


def _describe_batches(cfg) -> str:
  """How a step's batch is made (token budget, micro-batches), for the log."""
  d, k = cfg.data, cfg.train.accumulate
  size = (f'up to {d.batch_tokens:,} padded source + target positions (rows per length bucket)' if d.batch_tokens
          else f'{d.batch_size} examples')
  if k == 1:
    return f'{size} per step'
  return f'each step (one optimizer update) sums the gradients of {k} micro-batches of {size}'


def _plot_metrics(workdir: str, log) -> None:
  """DIR/metrics.png: training loss and the validation metric against the step (a failure only warns)."""
  try:
    curves.write_png(workdir_lib.path(workdir, 'metrics.jsonl'), workdir_lib.path(workdir, 'metrics.png'))
  except (Seq2SeqError, OSError) as e:
    log(f'warning: metrics.png not written: {e}')


def _loop(cfg, workdir, model, state, start, meta, data_iter, validation_pairs, src_vocab, tgt_vocab, ckpt, writer,
          stop, lock, vocabs):
  """Steps start + 1 .. num_steps with logs, evaluations and checkpoints; returns (host state, last eval, the last
  step). Early stopping ends it sooner (training/stopping.py; its tracker is restored from the checkpoint's `meta`).

  Stopping on a signal: in one process, after the step during which it came. In several, each process puts the
  signal number it got into its next batch (`batch['stop']`); the step returns the maximum over all devices, and
  the loop reads it one step late (so the host never waits for the device), the same value in every process:
  all stop after the same step, save the same checkpoint and exit with the same status.
  """
  t, first, multi = cfg.train, jax.process_index() == 0, jax.process_count() > 1
  metric_name, mode = config_lib.task_metric(cfg)
  dp = parallel.DataParallel(model, cfg, objective=objectives.build(cfg, tgt_vocab))
  state = dp.replicate(state)
  progress = Progress(t.num_steps, start, enabled=first)
  pending, clock, last_eval, eval_step, previous = [], time.perf_counter(), {}, None, None
  tracker = stopping.restore(meta, lambda: _best_so_far(workdir, metric_name, start))
  if stopping.stopped(tracker, t):
    progress.write(f'step {start}: early stopping had ended this run (no better {metric_name} than '
                   f'{tracker["best"]:.4g} of step {tracker["best_step"]} in {tracker["bad_evals"]} evaluations); '
                   f'raise train.patience to go on')
    progress.close()
    return dp.unreplicate(state), (meta or {}).get('validation', {}), start
  step = start
  try:
    for step in range(start + 1, t.num_steps + 1):
      batch = next(data_iter)  # every process follows the same batch plan and builds only its own rows
      batch.pop('index')
      if multi:
        batch['stop'] = np.full((jax.local_device_count(),), stop.signum, np.int32)
      state, m = dp.step(state, batch, tracker['lr_scale'])
      pending.append(m)
      if not multi:
        signum = stop.signum
      else:
        signum = int(dp.metrics({'stop': previous['stop']})['stop']) if previous is not None else 0
      previous, signalled = m, bool(signum) and step < t.num_steps
      if step % t.log_every == 0 or step == t.num_steps or signalled:
        jax.block_until_ready(pending[-1])  # the clock must see the device's work, not its dispatch
        logged = _log_train([dp.metrics(m) for m in pending], step, time.perf_counter() - clock, t.on_nonfinite)
        if t.accumulate > 1:  # steps count optimizer updates; each one took train.accumulate micro-batches
          logged['micro_batches'] = step * t.accumulate
        writer.write(step, 'train', logged)
        progress.update(step, logged['loss'], logged['tokens_per_s'])
        pending, clock = [], time.perf_counter()
      events = 0
      if step % t.eval_every == 0 or step == t.num_steps:
        predictor = Predictor(cfg, dp.unreplicate(state).params, src_vocab, tgt_vocab)
        last_eval, eval_step = evaluate.evaluate(predictor, validation_pairs, t.eval_examples), step
        value = last_eval[metric_name]
        events = distributed.broadcast(stopping.judge(tracker, value, mode, t))  # process 0 decides for all
        tracker = stopping.advance(tracker, events, step, value, t)
        last_eval.update({f'best_{metric_name}': tracker['best'], 'best_step': tracker['best_step']})
        writer.write(step, 'validation', last_eval)
        if t.attention_plots and first:
          sources_to_plot = [s for s, _ in sources.group_references(validation_pairs)[:t.attention_plots]]
          paths = plotting.write_attention_pngs(predictor, sources_to_plot, workdir_lib.path(workdir, 'attention'),
                                                f'step-{step}')
          writer.images(step, 'attention', paths)
        progress.write(f'step {step}: validation ' + ', '.join(f'{k} {v:.4g}' for k, v in last_eval.items()))
        _plateau_and_stop(events, tracker, step, metric_name, t, writer, progress, ckpt.directory)
        clock = time.perf_counter()
      early = bool(events & stopping.STOP) and step < t.num_steps
      if (step % t.checkpoint_every == 0 or step == t.num_steps or signalled or early
          or (t.patience and events & stopping.IMPROVED)):  # early stopping keeps the best step's checkpoint
        if lock is not None and lock.lost:
          raise WorkdirError(f'{lock.path}: the lock was taken over or removed by someone else; stopping without '
                             f'saving, so that two runs do not write one workdir')
        evaluated = {'validation': last_eval} if eval_step == step else {}  # what picks the best checkpoint
        host = dp.unreplicate(state)
        ckpt.save(step, host.params, steps.train_part(host), data_iter.get_state(),
                  {'step': step, **vocabs, **evaluated, 'tracker': tracker}, metric_name, mode)
        clock = time.perf_counter()
      if early:
        break
      if signalled:
        raise Interrupted(f'{signal.Signals(signum).name} at step {step}: checkpoint saved in {ckpt.directory}/'
                          f'{step}; the same command resumes from it', signum)
  finally:  # ends the bar's line: whatever is printed next starts on its own line
    progress.close()
  return dp.unreplicate(state), last_eval, step


def _plateau_and_stop(events: int, tracker: dict, step: int, metric: str, t, writer, progress, directory) -> None:
  """Logs a learning-rate reduction and early stopping, as a line and as a metrics.jsonl row each (written
  before the step's checkpoint: a run resumed from an earlier one drops and writes them again)."""
  best = f'no better {metric} than {tracker["best"]:.4g} (step {tracker["best_step"]})'
  if events & stopping.REDUCED:
    writer.write(step, 'plateau', {'lr_scale': tracker['lr_scale'], 'best_step': tracker['best_step'],
                                   f'best_{metric}': tracker['best']})
    progress.write(f'step {step}: {best} in {t.plateau_patience} evaluation(s): learning rate x '
                   f'{t.plateau_factor:g}, now {tracker["lr_scale"]:g} x the schedule')
  if events & stopping.STOP and step < t.num_steps:
    writer.write(step, 'early_stop', {'best_step': tracker['best_step'], f'best_{metric}': tracker['best'],
                                      'evaluations_without_improvement': tracker['bad_evals']})
    progress.write(f'step {step}: early stopping: {best} in {tracker["bad_evals"]} evaluations (train.patience='
                   f'{t.patience}); the best checkpoint is {directory}/{tracker["best_step"]}')


def _best_so_far(workdir: str, metric_name: str, start: int) -> tuple[int, float] | None:
  """(step, value) of the best validation result logged up to `start` in this workdir (for resumed runs)."""
  path = workdir_lib.path(workdir, 'metrics.jsonl')
  if not os.path.isfile(path):
    return None
  last = None
  with open(path, encoding='utf-8', errors='replace') as f:
    for line in f:
      try:
        row = json.loads(line)
      except ValueError:
        continue  # a damaged line (process 0 drops it when it resumes)
      if row.get('kind') == 'validation' and 'best_step' in row and row.get('step', 0) <= start:
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
  """The auxiliary losses of one log interval (those the run has): coverage per target token, guided per real
  (source, target) pair, and the guided loss's weight at the last step; a sequence-level objective's loss per
  source (mrt: the risk), its candidates' mean cost, their number per source (after removing duplicates) and the
  baseline's mean cost (scst)."""
  out = {}
  total = lambda key: float(sum(m[key] for m in host))
  if 'sequence_loss_sum' in host[-1]:
    sources, candidates = max(total('sequences'), 1.0), max(total('candidates'), 1.0)
    out.update(sequence_loss=total('sequence_loss_sum') / sources,
               candidate_cost=total('candidate_cost_sum') / candidates, candidates_per_source=candidates / sources)
    if 'baseline_cost_sum' in host[-1]:
      out['baseline_cost'] = total('baseline_cost_sum') / sources
  if 'coverage_loss_sum' in host[-1]:
    out['coverage_loss'] = (float(sum(m['coverage_loss_sum'] for m in host))
                            / max(float(sum(m['tokens'] for m in host)), 1.0))
  if 'guided_loss_sum' in host[-1]:
    out['guided_loss'] = (float(sum(m['guided_loss_sum'] for m in host))
                          / max(float(sum(m['guided_pairs'] for m in host)), 1.0))
    out['guided_weight'] = float(host[-1]['guided_weight'])
  return out
