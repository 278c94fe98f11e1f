"""Ensembles: several models decoded as one, by combining their next-token distributions at every step.

Each member keeps its own carry and memory (architectures may differ: other sizes, cells, attention kinds);
what they must share is the target vocabulary (and, here, the source vocabulary: every member reads the same
source ids). At every step of greedy, sampling or beam search the members' log-probabilities are combined:
  logprob   log p(y) = log_softmax(mean_m log p_m(y))       (a normalised geometric mean)
  prob      log p(y) = log(mean_m p_m(y))                   (the arithmetic mean of the probabilities)
The attention shown for an ensemble is the members' mean. `EnsembleFns` has the interface of `ModelFns`
(fns.py) with a tuple of parameter trees, one per member, so every decoder serves it unchanged.
"""

import dataclasses

import jax
import jax.numpy as jnp

from seq2seq_jax.decoding.fns import ModelFns

COMBINE = ('logprob', 'prob')


@dataclasses.dataclass(frozen=True)
class EnsembleFns:
  """encode/step of several models, taking a tuple of their parameters first."""
  members: tuple[ModelFns, ...]
  combine: str = 'logprob'

  def encode(self, params, src_BxS, src_len_B, src_ext_BxS=None):
    outs = [m.encode(p, src_BxS, src_len_B, src_ext_BxS) for m, p in zip(self.members, params, strict=True)]
    return tuple(c for c, _ in outs), tuple(mem for _, mem in outs)

  def step(self, params, carry, y_B, memory):
    outs = [m.step(p, c, y_B, mem) for m, p, c, mem in zip(self.members, params, carry, memory, strict=True)]
    logp_MxBxV = jnp.stack([logp for _, logp, _ in outs])
    if self.combine == 'logprob':
      logp_BxV = jax.nn.log_softmax(logp_MxBxV.mean(0))
    else:
      logp_BxV = jax.nn.logsumexp(logp_MxBxV, axis=0) - jnp.log(len(outs))
    attn_BxS = jnp.stack([attn for _, _, attn in outs]).mean(0)
    return tuple(c for c, _, _ in outs), logp_BxV, attn_BxS
