"""The compiled decoders of a Seq2Seq model with a length rule, as the tests call them (outputs as numpy); a copy
model's extended source ids come as `src_ext`."""

import jax
import numpy as np

from seq2seq_jax.decoding import search
from seq2seq_jax.decoding.beam import Beam
from seq2seq_jax.decoding.fns import ModelFns
from seq2seq_jax.decoding.greedy import Greedy, LengthRule
from seq2seq_jax.decoding.sampling import Sample


def rule(a: float, b: int, cap: int) -> LengthRule:
  return LengthRule(a, b, cap)


def _run(model, params, src, src_len, chosen, keys=None, src_ext=None) -> dict:
  return jax.tree.map(np.asarray, search.decode(params, src, src_len, keys, src_ext, fns=ModelFns(model),
                                                search=chosen))


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
