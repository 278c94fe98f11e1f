"""Attention kinds: one registry entry each, built from pure functions.

Shapes: B batch, S source positions, Q query size (decoder state), D value size (encoder output),
A additive hidden size. A kind is a `Kind` in `KINDS`; everything else (the decoder, config validation,
FLOP counting, every decoder loop) reads it from there, so adding a kind is one entry in this file (its
functions may live in a module of their own: location.py, monotonic.py).

A kind has
  init(rng, query_size, value_size, attention_size, **settings) -> params
  keys(params, values_BxSxD) -> keys         the source-side part of the score, once per source sequence
  weights(params, query_BxQ, keys, mask_BxS, state) -> weights_BxS
                                             masked positions get exactly zero weight
  init_state(mask_BxS) -> state              per-step attention state (any pytree; `()` for stateless kinds)
  update_state(state, weights_BxS) -> state  after each decoder step
or, instead of `weights` / `update_state`, for a kind whose next state is not a function of its weights alone or
that decodes by another rule than it trains:
  step(params, query_BxQ, keys, mask_BxS, state, *, hard, noise_BxS, **settings) -> (weights_BxS, state)
                                             hard: False in the teacher-forced scan (training, evaluation
                                             loss), True in the decoders; noise_BxS: training noise or None
`settings(c)` picks the kind's own hyper-parameters from the ModelConfig (e.g. location filters), passed to
`init` and `step` as keywords. The decoder keeps the state in its carry, so the teacher-forced scan, greedy,
sampling and beam search (which reorders it with its beams like any other carry) serve stateful kinds without
knowing which kind runs.

  additive   (Bahdanau)  score = vᵀ tanh(W s + U h)   keys = U h + b      (B, S, A)
  dot        (Luong)     score = sᵀ h                 keys = h            (B, S, D), needs Q == D
  general    (Luong)     score = sᵀ W h               keys = h Wᵀ         (B, S, Q)
  scaled_dot             score = sᵀ h / √D            keys = h            (B, S, D), needs Q == D
  none                   no attention: the context is the encoder's final state at every step
  location   (Chorowski) score = wᵀ tanh(W s + V h + U f + b), f = F * [α_{i-1}; Σ α]      location.py
  coverage   (Tu; See)   score = vᵀ tanh(W s + V h + w_c Σ_{i'<i} α_{i'} + b)            location.py
  monotonic  (Raffel)    expected (soft) / hard monotonic alignment                      monotonic.py
  mocha      (Chiu)      soft attention over a chunk of W positions ending at the monotonic one  monotonic.py
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from seq2seq_jax.model import energies, location as loc, monotonic as mono
from seq2seq_jax.model.energies import NEG_INF, context, init_additive, masked_softmax  # noqa: F401


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
  """One attention kind (see the module docstring). `weights` and `step` both None: no attention (the decoder
  reads the encoder's final state). `same_size`: the query must have the values' size (dot products of s and
  h). `noisy`: `step` takes training noise of std `model.monotonic_noise`. `flops_keys(c, batch, src_len)` /
  `flops_scores(c, batch, src_len)`: matmul FLOPs of the key projection (once per source) and of one step's
  scores (the context sum is counted by the caller)."""
  init: Callable[..., dict]
  keys: Callable[[dict, jax.Array], Any]
  weights: Callable[..., jax.Array] | None
  init_state: Callable[[jax.Array], Any] = no_state
  update_state: Callable[[Any, jax.Array], Any] = keep_state
  step: Callable[..., tuple] | None = None
  settings: Callable[[Any], dict] = lambda c: {}
  noisy: bool = False
  same_size: bool = False
  flops_keys: Callable[..., int] = lambda c, batch, src_len: 0
  flops_scores: Callable[..., int] = lambda c, batch, src_len: 0

  @property
  def attends(self) -> bool:
    """False for 'none': no weights at all."""
    return self.weights is not None or self.step is not None


def _split3(rng):
  return jax.random.split(rng, 3)


_init_additive = init_additive


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
    'location': Kind(
        init=loc.init_location, keys=energies.additive_keys, weights=loc.location, init_state=loc.location_state,
        update_state=loc.location_update,
        settings=lambda c: {'filters': c.location_filters, 'width': c.location_width},
        flops_keys=energies.additive_flops_keys, flops_scores=loc.location_flops_scores),
    'coverage': Kind(
        init=loc.init_coverage, keys=energies.additive_keys, weights=loc.coverage, init_state=loc.coverage_state,
        update_state=loc.coverage_update, flops_keys=energies.additive_flops_keys,
        flops_scores=energies.additive_flops_scores),
    'monotonic': Kind(
        init=mono.init_monotonic, keys=energies.additive_keys, weights=None, init_state=mono.monotonic_state,
        step=mono.monotonic_step, settings=lambda c: {'init_r': c.monotonic_init_r}, noisy=True,
        flops_keys=energies.additive_flops_keys, flops_scores=energies.additive_flops_scores),
    'mocha': Kind(
        init=mono.init_mocha, keys=mono.mocha_keys, weights=None, init_state=mono.monotonic_state,
        step=mono.mocha_step, settings=lambda c: {'init_r': c.monotonic_init_r, 'width': c.mocha_width},
        noisy=True, flops_keys=mono.mocha_flops_keys, flops_scores=mono.mocha_flops_scores),
}
