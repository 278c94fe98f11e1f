"""The compiled decoders of a Seq2Seq model with a length rule, as the tests call them (outputs as numpy; a copy
model's extended source ids come as `src_ext`), and a stand-in chain model with the decoders' interface."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from seq2seq_jax.data.pipeline import pad_sources
from seq2seq_jax.data.vocab import BOS, PAD
from seq2seq_jax.decoding import search
from seq2seq_jax.decoding.beam import Beam
from seq2seq_jax.decoding.fns import ModelFns
from seq2seq_jax.decoding.greedy import Greedy, LengthRule
from seq2seq_jax.decoding.sampling import Sample


def rule(a: float, b: int, cap: int) -> LengthRule:
  return LengthRule(a, b, cap)


def _run(model, params, src, src_len, chosen, keys=None, src_ext=None) -> dict:
  return jax.tree.map(np.asarray, search.decode(params, src, src_len, keys, src_ext_BxS=src_ext,
                                                fns=ModelFns(model), search=chosen))


def greedy(model, params, src, src_len, src_ext=None, **length_rule) -> dict:
  """tokens (B, L), lengths (B,), attn (B, L, S), scores (B,)."""
  return {k: v[:, 0] for k, v in _run(model, params, src, src_len, Greedy(rule(**length_rule)),
                                      src_ext=src_ext).items()}


def beam(model, params, src, src_len, *, beam_size: int, nbest: int = 1, alpha: float = 0.0,
         early_stop: bool = True, src_ext=None, **length_rule) -> dict:
  """tokens (B, N, L), lengths (B, N), scores, logprobs, attn (B, N, L, S), steps."""
  return _run(model, params, src, src_len, Beam(rule(**length_rule), beam_size, nbest, alpha, early_stop),
              src_ext=src_ext)


def sample(model, params, src, src_len, keys, *, temperature: float = 1.0, top_k=None, src_ext=None,
           **length_rule) -> dict:
  """As greedy's, one sample per source drawn with its key."""
  out = _run(model, params, src, src_len, Sample(rule(**length_rule), temperature, top_k), keys, src_ext)
  return {k: v[:, 0] for k, v in out.items()}


def prefix_rows(prefixes, width: int | None = None):
  """Prefixes as (B, width) PAD-padded int32 (width: the longest by default)."""
  out = np.full((len(prefixes), width or max(len(p) for p in prefixes)), PAD, np.int32)
  for row, p in enumerate(prefixes):
    out[row, :len(p)] = p
  return out


def run(fns, params, chosen, sentences, *, pad_to=None, prefixes=None, prefix_width=None, keys=None) -> dict:
  """`chosen` (a search) over `fns` on source id lists `sentences` (padded to `pad_to`, default the longest
  plus EOS) with forced `prefixes` (padded to `prefix_width`); outputs with the n-best axis, as numpy."""
  src, src_len = pad_sources(sentences, pad_to or max(len(x) for x in sentences) + 1)
  prefix = None if prefixes is None else prefix_rows(prefixes, prefix_width)
  return jax.tree.map(np.asarray, search.decode(params, src, src_len, keys, prefix, fns=fns, search=chosen))


def hyps(out) -> list[list[list[int]]]:
  """The n-best token lists of each sentence of an output with the n-best axis."""
  tokens, lengths = out['tokens'], out['lengths']
  return [[tokens[i, n, :lengths[i, n]].tolist() for n in range(tokens.shape[1])] for i in range(len(tokens))]


@dataclasses.dataclass(frozen=True)
class ChainFns:
  """A stand-in for a model with the decoders' interface (fns.py): its parameters are a (V, V) table of
  log-probabilities, and the next token's distribution is the previous token's row; attention is uniform."""

  def encode(self, logp_VxV, src_BxS, src_len_B):
    del logp_VxV
    return {'h': jnp.zeros((src_BxS.shape[0], 1))}, {'mask': jnp.arange(src_BxS.shape[1]) < src_len_B[:, None]}

  def step(self, logp_VxV, carry, y_B, memory):
    return carry, logp_VxV[y_B], memory['mask'] / memory['mask'].sum(-1, keepdims=True)


def chain_table(rows: dict[int, dict[int, float]], vocab: int) -> np.ndarray:
  """Log-probabilities (V, V): row `token` holds rows[token] ({next token: probability}), every other token of
  the row at probability 0 (-inf); a token without a row continues uniformly. PAD and BOS are never next."""
  table = np.full((vocab, vocab), 1.0 / (vocab - 2))
  table[:, [PAD, BOS]] = 0.0
  for token, row in rows.items():
    table[token] = 0.0
    for nxt, p in row.items():
      table[token, nxt] = p
  with np.errstate(divide='ignore'):
    return np.log(table).astype(np.float32)
