"""What a run starts from: the same-run check of a workdir, the data and vocabularies, and the state restored
from the newest checkpoint that verifies (or a fresh one, or a parent's parameters with train.init_from)."""

import os

import jax
import numpy as np

from seq2seq_jax.data import sources
from seq2seq_jax.errors import CheckpointDamaged, CheckpointError, DataError
from seq2seq_jax.runs import parent as parent_lib, workdir as workdir_lib
from seq2seq_jax.training import distributed, steps

# Keys that may differ when the same workdir is trained again (e.g. to train for longer).
RESUMABLE_CHANGES = ('train.num_steps', 'train.log_every', 'train.eval_every', 'train.checkpoint_every',
                     'train.keep_checkpoints', 'train.attention_plots', 'train.patience',
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
  if not len(examples):
    raise DataError(f'no training data: {len(train_pairs)} training pairs read, {report["dropped_too_long"]} of '
                    f'them longer than data.max_source_len={cfg.data.max_source_len} / data.max_target_len='
                    f'{cfg.data.max_target_len}')
  sources.encode(cfg, validation_pairs, src_vocab, tgt_vocab)  # fail now on a bad validation file
  if report['unknown']:
    log(f'training data: {sum(report["unknown"].values())} unknown symbols mapped to UNK: '
        f'{dict(sorted(report["unknown"].items())[:10])}')
  if report.get('copied'):
    log(f'training data: {report["copied"]} target symbols outside the target vocabulary get the extended id of '
        f'their source (model.copy)')
  if report['dropped_too_long']:
    log(f'training data: dropped {report["dropped_too_long"]} pairs longer than data.max_source_len / '
        f'max_target_len')
  log(f'data: {len(examples)} training pairs, {len(validation_pairs)} validation pairs; vocabularies: '
      f'{len(src_vocab)} source / {len(tgt_vocab)} target symbols')
  return examples, validation_pairs, src_vocab, tgt_vocab


def vocab_meta(src_vocab, tgt_vocab) -> dict:
  return {'vocab_source': src_vocab.fingerprint(), 'vocab_target': tgt_vocab.fingerprint()}


def _check_vocabs(ckpt, step: int, vocabs: dict, workdir: str) -> None:
  saved = ckpt.meta(step)
  for key, value in vocabs.items():
    if saved.get(key, value) != value:
      raise CheckpointError(f'{ckpt.directory}/{step}: was trained with another {key.split("_")[1]} vocabulary '
                            f'than {workdir}/{key}.json holds ({saved[key]} != {value})')


def restore_or_init(cfg, workdir: str, model, ckpt, examples, vocabs: dict, log):
  """The newest checkpoint of `workdir` whose checksums verify, or a fresh state (with train.init_from: the
  parent's parameters and a fresh optimizer); returns (state, data_state, start step, the checkpoint's meta item
  or None, the parent {'dir', 'step'} when the state was started from one, else None).

  A damaged newer checkpoint is moved aside to N.damaged (by process 0) with a one-line warning, never deleted.
  A checkpoint that does not fit the config or vocabulary is an error, and nothing in the workdir changes.
  """
  def init():
    return steps.init_state(model, cfg, jax.random.PRNGKey(cfg.seed), examples.batch(np.arange(1)))
  like = jax.eval_shape(init)  # what a checkpoint must hold; the (slow, op-by-op) init runs only when none does
  damaged, found = [], None
  for step in reversed(ckpt.all_steps()):
    try:
      _check_vocabs(ckpt, step, vocabs, workdir)
      found = (step, ckpt.restore(step, like.params, steps.train_part(like)))
      break
    except CheckpointDamaged as e:
      damaged.append((step, e))
  start = found[0] if found else 0
  if distributed.broadcast(start) != start:
    raise CheckpointError(f'{ckpt.directory}: process {jax.process_index()} would resume from step {start}, '
                          f'process 0 from another step (do the hosts see the same files?)')
  if jax.process_index() == 0:
    for step, e in damaged:
      ckpt.quarantine(step, f'{e}; resuming from {f"step {start}" if found else "scratch"}')
  if found is None:
    if damaged:
      log('no checkpoint verifies: training starts from step 0')
    if not cfg.train.init_from:
      return init(), None, 0, None, None
    params, parent = parent_lib.load(cfg, like.params)
    log(f'starting from the parameters of {parent["dir"]} at step {parent["step"]} (a fresh optimizer)')
    return (steps.init_state(model, cfg, jax.random.PRNGKey(cfg.seed), examples.batch(np.arange(1)), params),
            None, 0, None, parent)
  out = found[1]
  log(f'resuming from the checkpoint at step {start} in {ckpt.directory}')
  return steps.join(out['params'], out['train']), out['data'], start, out['meta'], None
