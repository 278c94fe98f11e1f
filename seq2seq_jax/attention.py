"""Attention scoring functions: pure functions of (query, keys, values, mask[, params]).

Shapes: B batch, S source positions, Q query size, D value size (encoder output), A additive hidden size.
Each scorer returns `(weights_BxS, context_BxD)`; masked positions get exactly zero weight.

Keys are the per-source-sequence part of the score, computed once by `project_keys` before decoding starts,
never per decoder step:
  additive   (Bahdanau)  score = vᵀ tanh(W s + U h)   keys = U h + b      (B, S, A)
  dot        (Luong)     score = sᵀ h                 keys = h            (B, S, D), needs Q == D
  general    (Luong)     score = sᵀ W h               keys = h Wᵀ         (B, S, Q)
  scaled_dot             score = sᵀ h / √D            keys = h            (B, S, D), needs Q == D
"""

import jax
import jax.numpy as jnp

NEG_INF = -1e30


def masked_softmax(scores_BxS: jax.Array, mask_BxS: jax.Array) -> jax.Array:
  """Softmax over positions where mask is True; exactly 0 elsewhere (and all-zero rows stay finite)."""
  scores_BxS = jnp.where(mask_BxS, scores_BxS, NEG_INF)
  scores_BxS = scores_BxS - jax.lax.stop_gradient(scores_BxS.max(axis=-1, keepdims=True))
  e_BxS = jnp.where(mask_BxS, jnp.exp(scores_BxS), 0.0)
  return e_BxS / jnp.maximum(e_BxS.sum(axis=-1, keepdims=True), 1e-30)


def _attend(scores_BxS, values_BxSxD, mask_BxS):
  w_BxS = masked_softmax(scores_BxS, mask_BxS)
  return w_BxS, jnp.einsum('bs,bsd->bd', w_BxS, values_BxSxD)


def additive(query_BxQ, keys_BxSxA, values_BxSxD, mask_BxS, params):
  """Bahdanau: vᵀ tanh(W s + U h); `params` has `w_q` (Q, A) and `v` (A,)."""
  hidden_BxSxA = jnp.tanh(keys_BxSxA + (query_BxQ @ params['w_q'])[:, None, :])
  return _attend(hidden_BxSxA @ params['v'], values_BxSxD, mask_BxS)


def dot(query_BxQ, keys_BxSxQ, values_BxSxD, mask_BxS, params=None):
  """Luong dot: sᵀ h."""
  del params
  return _attend(jnp.einsum('bq,bsq->bs', query_BxQ, keys_BxSxQ), values_BxSxD, mask_BxS)


def general(query_BxQ, keys_BxSxQ, values_BxSxD, mask_BxS, params=None):
  """Luong general: sᵀ W h, with keys = h Wᵀ projected once by `project_keys`."""
  return dot(query_BxQ, keys_BxSxQ, values_BxSxD, mask_BxS, params)


def scaled_dot(query_BxQ, keys_BxSxQ, values_BxSxD, mask_BxS, params=None):
  """sᵀ h / √D."""
  del params
  scores_BxS = jnp.einsum('bq,bsq->bs', query_BxQ, keys_BxSxQ) / jnp.sqrt(keys_BxSxQ.shape[-1])
  return _attend(scores_BxS, values_BxSxD, mask_BxS)


SCORERS = {'additive': additive, 'dot': dot, 'general': general, 'scaled_dot': scaled_dot}


def init(rng, kind: str, query_size: int, value_size: int, attention_size: int) -> dict:
  """Parameters of the scorer `kind` (empty for dot and scaled_dot)."""
  k1, k2, k3 = jax.random.split(rng, 3)
  glorot = jax.nn.initializers.glorot_uniform()
  if kind == 'additive':
    return {'w_q': glorot(k1, (query_size, attention_size)),
            'u_k': glorot(k2, (value_size, attention_size)),
            'b': jnp.zeros((attention_size,)),
            'v': jax.random.uniform(k3, (attention_size,), minval=-0.1, maxval=0.1)}
  if kind == 'general':
    return {'w': glorot(k1, (query_size, value_size))}
  return {}


def project_keys(kind: str, params: dict, values_BxSxD: jax.Array) -> jax.Array:
  """The source-side part of the score, once per source sequence."""
  if kind == 'additive':
    return values_BxSxD @ params['u_k'] + params['b']
  if kind == 'general':
    return jnp.einsum('bsd,qd->bsq', values_BxSxD, params['w'])
  return values_BxSxD
