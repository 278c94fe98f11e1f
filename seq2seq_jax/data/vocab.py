"""Vocabularies: text <-> symbols (a tokenizer) <-> integer ids.

Ids 0..3 are reserved: PAD (padding), BOS (first decoder input), EOS (end of sequence), UNK (unknown symbol).
Tokenizers: `char` (every character is a symbol), `space` (whitespace-separated tokens, e.g. ARPAbet
phones), `spm` (SentencePiece subwords; the model file is saved beside the vocabulary).
"""

import collections
import hashlib
import json
import os
from typing import Iterable, Sequence

from seq2seq_jax.errors import DataError

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ('<pad>', '<s>', '</s>', '<unk>')


class Vocab:
  """A fixed symbol table with a tokenizer; built from training text, saved as JSON in the workdir."""

  def __init__(self, symbols: Sequence[str], tokenizer: str, spm_model: bytes | None = None):
    if tokenizer not in ('char', 'space', 'spm'):
      raise ValueError(f'unknown tokenizer {tokenizer!r}')
    self.symbols = list(SPECIALS) + [s for s in symbols if s not in SPECIALS]
    self.tokenizer = tokenizer
    self.index = {s: i for i, s in enumerate(self.symbols)}
    self.spm_model = spm_model
    self._spm = None
    if tokenizer == 'spm':
      import sentencepiece as spm
      self._spm = spm.SentencePieceProcessor(model_proto=spm_model)

  def __len__(self) -> int:
    return len(self.symbols)

  def __eq__(self, other) -> bool:
    return (isinstance(other, Vocab) and self.symbols == other.symbols and self.tokenizer == other.tokenizer
            and self.spm_model == other.spm_model)

  @classmethod
  def build(cls, texts: Iterable[str], tokenizer: str, spm_model: bytes | None = None,
            min_count: int = 1) -> 'Vocab':
    """Collects every symbol of `texts` seen at least `min_count` times, most frequent first (ties by symbol),
    for a stable order."""
    proto = cls([], tokenizer, spm_model)
    counts = collections.Counter(s for t in texts for s in proto.split(t))
    return cls(sorted((s for s in counts if counts[s] >= min_count), key=lambda s: (-counts[s], s)), tokenizer,
               spm_model)

  def fingerprint(self) -> str:
    """A short hash of the tokenizer and symbol table (and SentencePiece model): equal iff same vocabulary."""
    h = hashlib.sha256(json.dumps([self.tokenizer, self.symbols], ensure_ascii=False).encode())
    h.update(self.spm_model or b'')
    return h.hexdigest()[:16]

  def split(self, text: str) -> list[str]:
    if self.tokenizer == 'char':
      return list(text)
    if self.tokenizer == 'space':
      return text.split()
    return self._spm.encode(text, out_type=str)

  def join(self, symbols: Sequence[str]) -> str:
    if self.tokenizer == 'char':
      return ''.join(symbols)
    if self.tokenizer == 'space':
      return ' '.join(symbols)
    return self._spm.decode_pieces(list(symbols))

  def encode(self, text: str, where: str = '', unknown: collections.Counter | None = None) -> list[int]:
    """Symbol ids of `text` (no BOS/EOS).

    Unknown symbols map to UNK and are counted in `unknown` when it is given; without it they are an error
    that names the symbol and `where` (e.g. "<stdin>:3").
    """
    ids = []
    for s in self.split(text):
      i = self.index.get(s)
      if i is None or i < len(SPECIALS):
        if unknown is None:
          raise DataError(f'{where or "input"}: unknown symbol {s!r} (not in the training vocabulary)')
        unknown[s] += 1
        i = UNK
      ids.append(i)
    return ids

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids`, stopping at the first EOS and skipping PAD/BOS."""
    out = []
    for i in ids:
      i = int(i)
      if i == EOS:
        break
      if i in (PAD, BOS):
        continue
      out.append(self.symbols[i] if i < len(self.symbols) else SPECIALS[UNK])
    return self.join(out)

  def save(self, path: str) -> None:
    spm_file = ''
    if self.spm_model is not None:
      spm_file = os.path.basename(path) + '.spm.model'
      with open(os.path.join(os.path.dirname(path), spm_file), 'wb') as f:
        f.write(self.spm_model)
    with open(path, 'w', encoding='utf-8') as f:
      json.dump({'tokenizer': self.tokenizer, 'spm_model': spm_file, 'symbols': self.symbols}, f,
                ensure_ascii=False, indent=0)

  @classmethod
  def load(cls, path: str) -> 'Vocab':
    try:
      with open(path, encoding='utf-8') as f:
        data = json.load(f)
      spm_model = None
      if data['spm_model']:
        with open(os.path.join(os.path.dirname(path), data['spm_model']), 'rb') as f:
          spm_model = f.read()
      return cls(data['symbols'][len(SPECIALS):], data['tokenizer'], spm_model)
    except (OSError, ValueError, KeyError) as e:
      raise DataError(f'{path}: cannot read vocabulary ({e})') from e
