"""Attention kinds: one registry entry each, built from pure functions.

Shapes: B batch, S source positions, Q query size (decoder state), D value size (encoder output),
A additive hidden size. A kind is a `Kind` in `KINDS`; everything else (the decoder, config validation,
FLOP counting, every decoder loop) reads it from there, so adding a kind is one entry in this file.

A kind has
  init(rng, query_size, value_size, attention_size) -> params
  keys(params, values_BxSxD) -> keys         the source-side part of the score, once per source sequence
  weights(params, query_BxQ, keys, mask_BxS, state) -> weights_BxS
                                             masked positions get exactly zero weight
  init_state(mask_BxS) -> state              per-step attention state (any pytree; `()` for stateless kinds)
  update_state(state, weights_BxS) -> state  after each decoder step
The decoder keeps the state in its carry, so the teacher-forced scan, greedy, sampling and beam search (which
reorders it with its beams like any other carry) serve stateful kinds without knowing which kind runs.

  additive   (Bahdanau)  score = vᵀ tanh(W s + U h)   keys = U h + b      (B, S, A)
  dot        (Luong)     score = sᵀ h                 keys = h            (B, S, D), needs Q == D
  general    (Luong)     score = sᵀ W h               keys = h Wᵀ         (B, S, Q)
  scaled_dot             score = sᵀ h / √D            keys = h            (B, S, D), needs Q == D
  none                   no attention: the context is the encoder's final state at every step
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

NEG_INF = -1e30


def masked_softmax(scores_BxS: jax.Array, mask_BxS: jax.Array) -> jax.Array:
  """Softmax over positions where mask is True; exactly 0 elsewhere (and all-zero rows stay finite)."""
  scores_BxS = jnp.where(mask_BxS, scores_BxS, NEG_INF)
  scores_BxS = scores_BxS - jax.lax.stop_gradient(scores_BxS.max(axis=-1, keepdims=True))
  e_BxS = jnp.where(mask_BxS, jnp.exp(scores_BxS), 0.0)
  return e_BxS / jnp.maximum(e_BxS.sum(axis=-1, keepdims=True), 1e-30)


def context(weights_BxS: jax.Array, values_BxSxD: jax.Array) -> jax.Array:
  """The weighted sum of the values: (B, D)."""
  return jnp.einsum('bs,bsd->bd', weights_BxS, values_BxSxD)


def no_state(mask_BxS):
  del mask_BxS
  return ()


def keep_state(state, weights_BxS):
  del weights_BxS
  return state


def _mm(m: int, k: int, n: int) -> int:
  return 2 * m * k * n


@dataclasses.dataclass(frozen=True)
class Kind:
  """One attention kind (see the module docstring). `weights` None: no attention (the decoder reads the
  encoder's final state). `same_size`: the query must have the values' size (dot products of s and h).
  `flops_keys(c, batch, src_len)` / `flops_scores(c, batch, src_len)`: matmul FLOPs of the key projection
  (once per source) and of one step's scores (the context sum is counted by the caller)."""
  init: Callable[..., dict]
  keys: Callable[[dict, jax.Array], Any]
  weights: Callable[..., jax.Array] | None
  init_state: Callable[[jax.Array], Any] = no_state
  update_state: Callable[[Any, jax.Array], Any] = keep_state
  same_size: bool = False
  flops_keys: Callable[..., int] = lambda c, batch, src_len: 0
  flops_scores: Callable[..., int] = lambda c, batch, src_len: 0


def _split3(rng):
  return jax.random.split(rng, 3)


def _init_additive(rng, query_size: int, value_size: int, attention_size: int) -> dict:
  k1, k2, k3 = _split3(rng)
  glorot = jax.nn.initializers.glorot_uniform()
  return {'w_q': glorot(k1, (query_size, attention_size)),
          'u_k': glorot(k2, (value_size, attention_size)),
          'b': jnp.zeros((attention_size,)),
          'v': jax.random.uniform(k3, (attention_size,), minval=-0.1, maxval=0.1)}


def _init_general(rng, query_size: int, value_size: int, attention_size: int) -> dict:
  del attention_size
  return {'w': jax.nn.initializers.glorot_uniform()(_split3(rng)[0], (query_size, value_size))}


def _no_params(rng, query_size: int, value_size: int, attention_size: int) -> dict:
  del rng, query_size, value_size, attention_size
  return {}


def _values_as_keys(params, values_BxSxD):
  del params
  return values_BxSxD


def additive(params, query_BxQ, keys_BxSxA, mask_BxS, state=()):
  """Bahdanau: vᵀ tanh(W s + U h); `params` has `w_q` (Q, A) and `v` (A,)."""
  del state
  hidden_BxSxA = jnp.tanh(keys_BxSxA + (query_BxQ @ params['w_q'])[:, None, :])
  return masked_softmax(hidden_BxSxA @ params['v'], mask_BxS)


def dot(params, query_BxQ, keys_BxSxQ, mask_BxS, state=()):
  """Luong dot: sᵀ h (general: sᵀ W h, with keys = h Wᵀ projected once)."""
  del params, state
  return masked_softmax(jnp.einsum('bq,bsq->bs', query_BxQ, keys_BxSxQ), mask_BxS)


def scaled_dot(params, query_BxQ, keys_BxSxQ, mask_BxS, state=()):
  """sᵀ h / √D."""
  del params, state
  scores_BxS = jnp.einsum('bq,bsq->bs', query_BxQ, keys_BxSxQ) / jnp.sqrt(keys_BxSxQ.shape[-1])
  return masked_softmax(scores_BxS, mask_BxS)


def _dot_scores_flops(c, batch: int, src_len: int) -> int:
  return _mm(batch * src_len, c.decoder_size, 1)


KINDS: dict[str, Kind] = {
    'additive': Kind(
        init=_init_additive, keys=lambda p, v_BxSxD: v_BxSxD @ p['u_k'] + p['b'], weights=additive,
        flops_keys=lambda c, batch, src_len: _mm(batch * src_len, c.memory_size, c.attention_size),
        flops_scores=lambda c, batch, src_len: (_mm(batch, c.decoder_size, c.attention_size)
                                                + _mm(batch * src_len, c.attention_size, 1))),
    'dot': Kind(init=_no_params, keys=_values_as_keys, weights=dot, same_size=True,
                flops_scores=_dot_scores_flops),
    'general': Kind(
        init=_init_general, keys=lambda p, v_BxSxD: jnp.einsum('bsd,qd->bsq', v_BxSxD, p['w']), weights=dot,
        flops_keys=lambda c, batch, src_len: _mm(batch * src_len, c.memory_size, c.decoder_size),
        flops_scores=_dot_scores_flops),
    'scaled_dot': Kind(init=_no_params, keys=_values_as_keys, weights=scaled_dot, same_size=True,
                       flops_scores=_dot_scores_flops),
    'none': Kind(init=_no_params, keys=lambda p, v_BxSxD: (), weights=None),
}
