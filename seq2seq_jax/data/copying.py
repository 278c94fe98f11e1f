"""The extended vocabulary of the pointer-generator (model.copy): per example, the target vocabulary plus that
example's own source symbols that the target vocabulary lacks.

For a source of symbols x_1 .. x_n, `extend` gives each position its extended target id: the symbol's id in the
target vocabulary, or V + k for the k-th distinct source symbol (in order of first appearance) that the target
vocabulary lacks (V = len(target vocabulary)); those symbols are the example's `oovs`. A source symbol unknown
to the source vocabulary is read as UNK by the encoder but keeps its string here, so it can still be copied. A
target symbol outside the target vocabulary that the source holds gets its extended id (trainable through the
copy path); only one that the source lacks too becomes UNK. `symbols` maps decoded ids back to strings.
"""

import collections
import dataclasses
from typing import Iterable

from seq2seq_jax.data.vocab import SPECIALS, UNK, Vocab


@dataclasses.dataclass(frozen=True)
class Extended:
  """One source in the extended vocabulary: `ext[j]` is the extended id of source position j; `oovs[k]` the
  symbol of id V + k."""
  ext: tuple[int, ...]
  oovs: tuple[str, ...]


def extend(source: str, src_vocab: Vocab, tgt_vocab: Vocab) -> Extended:
  """The extended ids of `source`'s symbols (split by the source vocabulary's tokenizer)."""
  return extend_symbols(src_vocab.split(source), tgt_vocab)


def extend_symbols(source: Iterable[str], tgt_vocab: Vocab) -> Extended:
  """The extended ids of source symbols. '<unk>' (also what a source UNK id reads as) stays UNK; the other
  specials' names in a text are words like any other."""
  ext, oovs = [], {}
  for symbol in source:
    i = UNK if symbol == SPECIALS[UNK] else tgt_vocab.index.get(symbol)
    if i is None or (i < len(SPECIALS) and i != UNK):
      i = len(tgt_vocab) + oovs.setdefault(symbol, len(oovs))
    ext.append(i)
  return Extended(tuple(ext), tuple(oovs))


def encode_target(target: str, tgt_vocab: Vocab, extended: Extended, unknown: collections.Counter) -> list[int]:
  """Target ids in the extended vocabulary of its source; symbols that neither holds are UNK (counted)."""
  oov_ids = {s: len(tgt_vocab) + k for k, s in enumerate(extended.oovs)}
  ids = []
  for symbol in tgt_vocab.split(target):
    i = tgt_vocab.index.get(symbol)
    if i is None or i < len(SPECIALS):
      i = oov_ids.get(symbol)
      if i is None:
        unknown[symbol] += 1
        i = UNK
    ids.append(i)
  return ids


def symbols(ids: Iterable[int], tgt_vocab: Vocab, extended: Extended | None) -> list[str]:
  """The symbols of decoded ids (no EOS among them); ids past the target vocabulary are the source's oovs."""
  out = []
  for i in ids:
    i = int(i)
    if i < len(tgt_vocab):
      out.append(tgt_vocab.symbols[i])
    else:
      k = i - len(tgt_vocab)
      out.append(extended.oovs[k] if extended is not None and k < len(extended.oovs) else SPECIALS[UNK])
  return out
