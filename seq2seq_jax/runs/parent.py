"""`train.init_from`: a new run that starts from the parameters of another run's checkpoint (its parent).

The parent must have the same model (every `model.*` key that shapes or gives meaning to the parameters: all but
FREE_MODEL_KEYS, which only change how they are trained or computed) and the same source and target
vocabularies as the new run; otherwise a one-line CheckpointError names the difference. The optimizer and the
step count start afresh; the new run's run_info.json names the parent (directory and step).
"""

import os

from seq2seq_jax.errors import CheckpointError, DataError
from seq2seq_jax.runs import workdir as workdir_lib

FREE_MODEL_KEYS = ('dropout', 'monotonic_noise', 'scan_unroll', 'remat', 'compute_dtype')


def _where(cfg) -> str:
  return f'--config.train.init_from={cfg.train.init_from}'


def check_model(cfg) -> None:
  """CheckpointError unless the parent is a run with the checkpoint that train.init_step names and this config's
  model (checked before any data is read)."""
  parent = cfg.train.init_from
  try:
    parent_cfg = workdir_lib.load_config(parent)
    workdir_lib.checkpointer(parent, cfg.train.init_step)[0].close()  # the step it names exists
  except CheckpointError as e:
    raise CheckpointError(f'{_where(cfg)}: {e}') from None
  for key, value in cfg.model.items():
    if key not in FREE_MODEL_KEYS and parent_cfg.model[key] != value:
      raise CheckpointError(f'{_where(cfg)}: that run has another model: model.{key}={parent_cfg.model[key]!r} '
                            f'there, {value!r} here')


def check_vocabs(cfg, vocabs: dict) -> None:
  """CheckpointError unless the parent's vocabularies have the fingerprints of `vocabs` ({'vocab_source': ...,
  'vocab_target': ...}: those the new run built from its data)."""
  try:
    src_vocab, tgt_vocab = workdir_lib.load_vocabs(cfg.train.init_from)
  except DataError as e:
    raise CheckpointError(f'{_where(cfg)}: {e}') from None
  theirs = {'vocab_source': src_vocab.fingerprint(), 'vocab_target': tgt_vocab.fingerprint()}
  for key, value in vocabs.items():
    if theirs[key] != value:
      raise CheckpointError(f'{_where(cfg)}: that run has another {key.split("_")[1]} vocabulary '
                            f'({theirs[key]} there, {value} here: other data or tokenizer settings)')


def load(cfg, like_params) -> tuple[object, dict]:
  """The parent's parameters (verified, in the structure of `like_params`) and {'dir', 'step'} naming them."""
  parent = cfg.train.init_from
  try:
    ckpt, step = workdir_lib.checkpointer(parent, cfg.train.init_step)
  except CheckpointError as e:
    raise CheckpointError(f'{_where(cfg)}: {e}') from None
  try:
    params = ckpt.restore(step, like_params)['params']
  except CheckpointError as e:
    raise CheckpointError(f'{_where(cfg)}: {e}') from None
  finally:
    ckpt.close()
  return params, {'dir': os.path.abspath(parent), 'step': step}
