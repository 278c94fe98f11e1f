"""The pointer-generator's copy mechanism (See et al., 2017), as pure functions used by the decoder.

B batch, S source positions, V target vocabulary, X = V + S the extended vocabulary, E embedding size,
D encoder output size, H decoder units; `...` stands for any leading axes ((B,) in a decoding step, (B, T) in
the teacher-forced scan).

  p_gen  = σ(w_c·c_t + w_s·s_t + w_x·x_t + b)   c_t context, s_t top decoder state, x_t input embedding
  P(w)   = g · P_vocab(w) + (1 − p_gen) · Σ_{j: ext_j = w} α_j      over the extended vocabulary
  g      = p_gen + (1 − p_gen) · max(0, 1 − Σ_j α_j)

`ext_BxS` holds, for every source position, the extended target id of its symbol: its id in the target
vocabulary, or V + k for the k-th distinct symbol of that source that the target vocabulary lacks (the data
layer builds it, see data/copying.py; the source's EOS is EOS, padding PAD). The extended vocabulary of a batch
has V + S entries whatever its sources hold (no source has more than S distinct symbols): a static size per
padded source length. Ids that no source symbol takes have probability 0 (log-probability -inf), so decoding
never emits them and results do not depend on the padding.

g is p_gen for attention kinds whose weights sum to one; the monotonic kinds can leave mass unassigned (the
chance of never stopping), which then goes to the generator, so that P always sums to one.

Everything is computed in log space from log σ and log-softmax (no log of a product that may underflow), and
log 0 is taken as -inf with a zero gradient, so impossible ids never make a NaN in the backward pass.
"""

import jax
import jax.numpy as jnp

# The target vocabulary's UNK id (data.vocab.UNK; the model does not import the data layer): an extended id fed
# back as the next decoder input is read as UNK by the embedding.
UNK = 3


def init(rng, embed_size: int, memory_size: int, decoder_size: int) -> dict:
  """w_c (D,), w_s (H,), w_x (E,), b (): one weight vector over [c; s; x], drawn as a (D+H+E, 1) LeCun normal."""
  w = jax.random.normal(rng, (memory_size + decoder_size + embed_size,)) * (memory_size + decoder_size
                                                                            + embed_size) ** -0.5
  return {'w_c': w[:memory_size], 'w_s': w[memory_size:memory_size + decoder_size],
          'w_x': w[memory_size + decoder_size:], 'b': jnp.zeros(())}


def input_term(params: dict, e_xE):
  """w_x·x for embedded inputs of any leading shape; the decoder computes it with the embedding."""
  return e_xE @ params['w_x']


def gate(params: dict, ctx_BxD, s_BxH, x_term_B):
  """The pre-activation z of p_gen = σ(z)."""
  return ctx_BxD @ params['w_c'] + s_BxH @ params['w_s'] + x_term_B + params['b']


def safe_log(p):
  """log p, with -inf (and a zero gradient, not a NaN) where p == 0."""
  positive = p > 0
  return jnp.where(positive, jnp.log(jnp.where(positive, p, 1.0)), -jnp.inf)


def log_add(a, b):
  """log(exp(a) + exp(b)) elementwise, where either or both may be -inf, with finite gradients everywhere
  (jnp.logaddexp has a NaN gradient where both are -inf: the ids that no source symbol takes)."""
  m = jax.lax.stop_gradient(jnp.maximum(a, b))
  m = jnp.where(jnp.isfinite(m), m, 0.0)
  return m + safe_log(jnp.exp(a - m) + jnp.exp(b - m))


def copy_probs(attn_BxTxS, ext_BxS, size: int):
  """Σ_{j: ext_j = w} α_j for every extended id w < size: (B, T, size), by a scatter-add over the positions."""
  def one(attn_TxS, ext_S):
    return jnp.zeros((attn_TxS.shape[0], size), attn_TxS.dtype).at[:, ext_S].add(attn_TxS)
  return jax.vmap(one)(attn_BxTxS, ext_BxS)


def mix(logits_BxTxV, attn_BxTxS, gate_BxT, ext_BxS):
  """log P over the extended vocabulary, (B, T, V + S), in float32."""
  logits_BxTxV, attn_BxTxS, gate_BxT = (x.astype(jnp.float32) for x in (logits_BxTxV, attn_BxTxS, gate_BxT))
  vocab, src_steps = logits_BxTxV.shape[-1], ext_BxS.shape[-1]
  log_p, log_not_p = jax.nn.log_sigmoid(gate_BxT), jax.nn.log_sigmoid(-gate_BxT)
  unassigned_BxT = jnp.clip(1.0 - attn_BxTxS.sum(-1), 0.0, 1.0)
  log_g_BxT = log_add(log_p, log_not_p + safe_log(unassigned_BxT))
  generated_BxTxV = log_g_BxT[..., None] + jax.nn.log_softmax(logits_BxTxV)
  generated_BxTxX = jnp.pad(generated_BxTxV, ((0, 0), (0, 0), (0, src_steps)), constant_values=-jnp.inf)
  copied_BxTxX = log_not_p[..., None] + safe_log(copy_probs(attn_BxTxS, ext_BxS, vocab + src_steps))
  return log_add(generated_BxTxX, copied_BxTxX)


def mix_step(logits_BxV, attn_BxS, gate_B, ext_BxS):
  """`mix` for one decoding step: (B, V + S)."""
  return mix(logits_BxV[:, None], attn_BxS[:, None], gate_B[:, None], ext_BxS)[:, 0]


def decoder_input(y, vocab: int):
  """Extended ids (>= V, copied words) read as UNK by the embedding."""
  return jnp.where(y < vocab, y, UNK)
