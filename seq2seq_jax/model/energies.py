"""Pieces the attention kinds share: the masked softmax, the context sum, the additive energy and its parameters.

Shapes: B batch, S source positions, Q query size, D value size, A additive hidden size.
The kinds themselves live in attention.py (the registry), location.py and monotonic.py.
"""

import jax
import jax.numpy as jnp

NEG_INF = -1e30


def masked_softmax(scores_BxS: jax.Array, mask_BxS: jax.Array) -> jax.Array:
  """Softmax over the last axis where mask is True; exactly 0 elsewhere (and all-zero rows stay finite)."""
  scores_BxS = jnp.where(mask_BxS, scores_BxS, NEG_INF)
  scores_BxS = scores_BxS - jax.lax.stop_gradient(scores_BxS.max(axis=-1, keepdims=True))
  e_BxS = jnp.where(mask_BxS, jnp.exp(scores_BxS), 0.0)
  return e_BxS / jnp.maximum(e_BxS.sum(axis=-1, keepdims=True), 1e-30)


def context(weights_BxS: jax.Array, values_BxSxD: jax.Array) -> jax.Array:
  """The weighted sum of the values: (B, D)."""
  return jnp.einsum('bs,bsd->bd', weights_BxS, values_BxSxD)


def mm(m: int, k: int, n: int) -> int:
  """FLOPs of an (m, k) x (k, n) matmul."""
  return 2 * m * k * n


def init_additive(rng, query_size: int, value_size: int, attention_size: int) -> dict:
  """W (`w_q`, Q x A), U (`u_k`, D x A), b and v of vᵀ tanh(W s + U h + b)."""
  k1, k2, k3 = jax.random.split(rng, 3)
  glorot = jax.nn.initializers.glorot_uniform()
  return {'w_q': glorot(k1, (query_size, attention_size)),
          'u_k': glorot(k2, (value_size, attention_size)),
          'b': jnp.zeros((attention_size,)),
          'v': jax.random.uniform(k3, (attention_size,), minval=-0.1, maxval=0.1)}


def additive_keys(params, values_BxSxD):
  """U h + b, once per source sequence: (B, S, A)."""
  return values_BxSxD @ params['u_k'] + params['b']


def additive_hidden(params, query_BxQ, keys_BxSxA, extra_BxSxA=None):
  """tanh(W s + U h + b [+ extra]): (B, S, A); `extra` is a kind's own term (location features, coverage)."""
  pre_BxSxA = keys_BxSxA + (query_BxQ @ params['w_q'])[:, None, :]
  return jnp.tanh(pre_BxSxA if extra_BxSxA is None else pre_BxSxA + extra_BxSxA)


def additive_flops_keys(c, batch: int, src_len: int) -> int:
  return mm(batch * src_len, c.memory_size, c.attention_size)


def additive_flops_scores(c, batch: int, src_len: int) -> int:
  """W s and vᵀ tanh(.) of one step."""
  return mm(batch, c.decoder_size, c.attention_size) + mm(batch * src_len, c.attention_size, 1)


def shift(x_BxSx, offset: int, fill=0.0):
  """x moved along axis 1 by `offset` positions: y_j = x_{j - offset}, `fill` where j - offset is outside [0, S)."""
  if offset == 0:
    return x_BxSx
  steps = x_BxSx.shape[1]
  pad = jnp.full((x_BxSx.shape[0], min(abs(offset), steps)) + x_BxSx.shape[2:], fill, x_BxSx.dtype)
  if offset > 0:
    return jnp.concatenate([pad, x_BxSx[:, :steps - offset]], axis=1)[:, :steps]
  return jnp.concatenate([x_BxSx[:, -offset:], pad], axis=1)[:, :steps]
