"""What a workdir holds beside its checkpoints: the config and both vocabularies.

  DIR/config.json          the full config of the run
  DIR/vocab_source.json    source vocabulary (and .spm.model for SentencePiece)
  DIR/vocab_target.json
  DIR/checkpoints/         orbax checkpoints (see checkpoint.py)
  DIR/metrics.jsonl        one JSON object per logged step / evaluation
  DIR/tensorboard/         TensorBoard event files
"""

import json
import os

import ml_collections

from seq2seq_jax import config as config_lib
from seq2seq_jax.errors import CheckpointError
from seq2seq_jax.vocab import Vocab


def path(workdir: str, name: str) -> str:
  return os.path.join(workdir, name)


def write_atomic(filename: str, text: str) -> None:
  """Writes via a temporary file and rename, so a crash never leaves half a file."""
  tmp = filename + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(tmp, filename)


def save_config(workdir: str, cfg) -> None:
  write_atomic(path(workdir, 'config.json'), cfg.to_json_best_effort(indent=1, sort_keys=True) + '\n')


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config; keys added to the defaults since the run keep their defaults."""
  filename = path(workdir, 'config.json')
  if not os.path.isfile(filename):
    raise CheckpointError(f'{workdir}: not a workdir (no config.json)')
  with open(filename, encoding='utf-8') as f:
    saved = json.load(f)
  cfg = config_lib.default_config()
  config_lib.check_keys(ml_collections.ConfigDict(saved), cfg, where=filename)
  _update(cfg, saved)
  config_lib.validate(cfg)
  return cfg


def _update(cfg, saved: dict) -> None:
  for key, value in saved.items():
    if isinstance(value, dict):
      _update(cfg[key], value)
    else:
      cfg[key] = type(cfg[key])(value) if isinstance(cfg[key], (tuple, list)) else value


def save_vocabs(workdir: str, src_vocab: Vocab, tgt_vocab: Vocab) -> None:
  src_vocab.save(path(workdir, 'vocab_source.json'))
  tgt_vocab.save(path(workdir, 'vocab_target.json'))


def load_vocabs(workdir: str) -> tuple[Vocab, Vocab]:
  return Vocab.load(path(workdir, 'vocab_source.json')), Vocab.load(path(workdir, 'vocab_target.json'))
