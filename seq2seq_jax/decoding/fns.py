"""What every decoder sees of a model: two pure functions, with the parameters bound by the caller.

  encode(src_BxS, src_len_B) -> (carry, memory)
  step(carry, y_B, memory) -> (carry, logp_BxV, attn_BxS)

A pointer-generator (model.copy) also reads each source position's extended target id: `encode` takes
`src_ext_BxS` (search.decode binds it), and V is then the extended vocabulary V + S of the batch, whose ids past
the target vocabulary stand for source symbols (-inf where no source symbol takes them). A decoder feeds them
back like any token (the model reads them as UNK); the caller maps them back to strings (data/copying.py).

`carry` and `memory` are any pytrees whose leaves have the batch as their leading axis (beam search tiles
and reorders them row-wise); `logp_BxV` are log-probabilities of the next token, normalised over the tokens a
decoder may emit (never PAD or BOS). Greedy, sampling and beam search are written against these two functions
only, so another model (or an ensemble of models) plugs in by providing them.

`ModelFns` makes them from the Linen model, as `fns.encode(params, ...)` / `fns.step(params, ...)`; it is
hashable (a static argument of `jax.jit`).
"""

import dataclasses

import jax
import jax.numpy as jnp

from seq2seq_jax.data.vocab import BOS, PAD
from seq2seq_jax.model.seq2seq import Seq2Seq


def allowed_logits(logits_BxV):
  """Decoders never emit PAD or BOS."""
  return logits_BxV.at[:, jnp.array([PAD, BOS])].set(-jnp.inf)


@dataclasses.dataclass(frozen=True)
class ModelFns:
  """encode/step of one Seq2Seq model, taking its parameters first."""
  model: Seq2Seq

  def encode(self, params, src_BxS, src_len_B, src_ext_BxS=None):
    return self.model.apply({'params': params}, src_BxS, src_len_B, src_ext_BxS=src_ext_BxS, method='encode')

  def step(self, params, carry, y_B, memory):
    carry, logits_BxV, attn_BxS = self.model.apply({'params': params}, carry, y_B, memory, method='decode_step')
    return carry, jax.nn.log_softmax(allowed_logits(logits_BxV)), attn_BxS
