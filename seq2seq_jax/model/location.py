"""Attention kinds that read the history of their own weights: location-aware attention and coverage.

Shapes: B batch, S source positions, Q query size, D value size, A additive hidden size, K location filters,
R filter width. Both keep their history in the decoder's carry (the attention state), as a function of the
weights alone, so they use the registry's plain `weights` / `update_state` pair.

location (Chorowski et al., 2015, "Attention-based models for speech recognition"; the cumulative channel as in
  Tacotron 2, Shen et al., 2018):
    f_i = F * [α_{i-1}; Σ_{i'<i} α_{i'}]       K filters of width R over source positions, 2 input channels
    e_{i,j} = wᵀ tanh(W s_{i-1} + V h_j + U f_{i,j} + b),   α_i = masked softmax(e_i)
  The convolution is 'SAME' with zeros beyond the sequence: f_{i,j} = Σ_{o<R} F_o x_{j + o - (R-1)//2}. Padded
  positions hold exactly zero weight (and are masked again before convolving), so they never reach a real
  position's features. Initial state: no attention yet (both channels zero).

coverage (Tu et al., 2016, "Modeling coverage for neural machine translation"; See et al., 2017, "Get to the
  point"):
    c_{i,j} = Σ_{i'<i} α_{i',j},   e_{i,j} = vᵀ tanh(W s + V h_j + w_c c_{i,j} + b)
  `w_c` starts at zero: the kind starts as plain additive attention. (The coverage loss is in losses.py, the
  coverage penalty of beam search in decoding/beam.py.)
"""

import jax
import jax.numpy as jnp

from seq2seq_jax.model.energies import additive_hidden, init_additive, masked_softmax, mm


def init_location(rng, query_size: int, value_size: int, attention_size: int, *, filters: int, width: int) -> dict:
  """Additive parameters plus the filters F (`conv`: (R * 2, K), row o * 2 + channel) and U (`u_f`: (K, A))."""
  k_add, k_conv, k_u = jax.random.split(rng, 3)
  glorot = jax.nn.initializers.glorot_uniform()
  return {**init_additive(k_add, query_size, value_size, attention_size),
          'conv': glorot(k_conv, (width * 2, filters)), 'u_f': glorot(k_u, (filters, attention_size))}


def location_state(mask_BxS):
  zeros_BxS = jnp.zeros(mask_BxS.shape, jnp.float32)
  return {'previous': zeros_BxS, 'cumulative': zeros_BxS}


def location_update(state, weights_BxS):
  return {'previous': weights_BxS.astype(state['previous'].dtype), 'cumulative': state['cumulative'] + weights_BxS}


def location_features(conv_Rx2xK, history_BxSx2, mask_BxS):
  """f = F * history, 'SAME' with zeros outside [0, S) and at masked positions: (B, S, K).

  Written as one matmul of the (B, S, R * 2) windows with the filters (what a convolution computes)."""
  width = conv_Rx2xK.shape[0] // 2
  history_BxSx2 = jnp.where(mask_BxS[..., None], history_BxSx2, 0.0)
  left = (width - 1) // 2
  kernel_Rx2xK = conv_Rx2xK.reshape(width, 2, -1)
  return jax.lax.conv_general_dilated(history_BxSx2, kernel_Rx2xK, (1,), [(left, width - 1 - left)],
                                      dimension_numbers=('NWC', 'WIO', 'NWC'))


def location(params, query_BxQ, keys_BxSxA, mask_BxS, state):
  """wᵀ tanh(W s + V h + U f + b), f the convolved previous and cumulative weights."""
  history_BxSx2 = jnp.stack([state['previous'], state['cumulative']], axis=-1).astype(keys_BxSxA.dtype)
  features_BxSxK = location_features(params['conv'], history_BxSx2, mask_BxS)
  hidden_BxSxA = additive_hidden(params, query_BxQ, keys_BxSxA, features_BxSxK @ params['u_f'])
  return masked_softmax(hidden_BxSxA @ params['v'], mask_BxS)


def location_flops_scores(c, batch: int, src_len: int) -> int:
  """W s, the convolution, U f and wᵀ tanh(.) of one step."""
  k, r, a = c.location_filters, c.location_width, c.attention_size
  return (mm(batch, c.decoder_size, a) + mm(batch * src_len, 2 * r, k) + mm(batch * src_len, k, a)
          + mm(batch * src_len, a, 1))


def init_coverage(rng, query_size: int, value_size: int, attention_size: int) -> dict:
  return {**init_additive(rng, query_size, value_size, attention_size), 'w_c': jnp.zeros((attention_size,))}


def coverage_state(mask_BxS):
  return {'coverage': jnp.zeros(mask_BxS.shape, jnp.float32)}


def coverage_update(state, weights_BxS):
  return {'coverage': state['coverage'] + weights_BxS}


def coverage(params, query_BxQ, keys_BxSxA, mask_BxS, state):
  """vᵀ tanh(W s + V h + w_c c + b), c the sum of the previous steps' weights."""
  coverage_BxSx1 = state['coverage'].astype(keys_BxSxA.dtype)[..., None]
  hidden_BxSxA = additive_hidden(params, query_BxQ, keys_BxSxA, coverage_BxSx1 * params['w_c'])
  return masked_softmax(hidden_BxSxA @ params['v'], mask_BxS)
