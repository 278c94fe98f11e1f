"""SentencePiece subword models trained in memory from training text.

Training is deterministic: the same texts give a byte-identical model (one thread, no shuffling, an even
subsample of at most MAX_SENTENCES sentences). The model's special pieces have the ids of `seq2seq_jax.vocab`
(PAD 0, BOS 1, EOS 2, UNK 3), although `Vocab` maps the pieces to its own ids anyway.
"""

import io
from typing import Iterable

import sentencepiece as spm
from absl import logging

from seq2seq_jax.errors import ConfigError, DataError
from seq2seq_jax.data.vocab import BOS, EOS, PAD, SPECIALS, UNK

MAX_SENTENCES = 1_000_000  # ~1 minute of training; larger corpora are subsampled evenly
MODEL_TYPES = ('unigram', 'bpe', 'char', 'word')


def train_sentencepiece(texts: Iterable[str], vocab_size: int, model_type: str = 'unigram') -> bytes:
  """The serialized model (a ModelProto) of a SentencePiece model with about `vocab_size` pieces.

  When the text is too small for `vocab_size` pieces, the model gets as many as it supports (a warning
  says so); a `vocab_size` too small for the text's characters is a ConfigError.
  """
  if model_type not in MODEL_TYPES:
    raise ValueError(f'unknown SentencePiece model type {model_type!r}')
  sentences = [t for t in texts if t.strip()]
  if not sentences:
    raise DataError('no non-empty training text to train a SentencePiece model on')
  if len(sentences) > MAX_SENTENCES:
    step = len(sentences) / MAX_SENTENCES
    sentences = [sentences[int(i * step)] for i in range(MAX_SENTENCES)]
  try:
    return _train(sentences, vocab_size, model_type, hard_vocab_limit=True)
  except RuntimeError as e:
    if 'Vocabulary size too high' not in str(e):
      raise ConfigError(f'data.spm_vocab_size={vocab_size}: SentencePiece training failed ({_reason(e)})') from e
  model = _train(sentences, vocab_size, model_type, hard_vocab_limit=False)
  size = spm.SentencePieceProcessor(model_proto=model).vocab_size()
  logging.warning('data.spm_vocab_size=%d is too large for the training text: the model has %d pieces',
                  vocab_size, size)
  return model


def _train(sentences: list[str], vocab_size: int, model_type: str, hard_vocab_limit: bool) -> bytes:
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, model_type=model_type,
      hard_vocab_limit=hard_vocab_limit, num_threads=1, input_sentence_size=0, shuffle_input_sentence=False,
      pad_id=PAD, bos_id=BOS, eos_id=EOS, unk_id=UNK, pad_piece=SPECIALS[PAD], bos_piece=SPECIALS[BOS],
      eos_piece=SPECIALS[EOS], unk_piece=SPECIALS[UNK], minloglevel=2)
  return model.getvalue()


def _reason(error: RuntimeError) -> str:
  """The readable part of a SentencePiece error ('INTERNAL: file.cc(638) [check] Reason.' -> 'Reason.')."""
  text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  return text.split('] ', 1)[-1][:300]
