"""Monotonic attention kinds: hard monotonic attention and monotonic chunkwise attention (MoChA).

Shapes: B batch, S source positions, Q query size, D value size, A additive hidden size, W chunk width.
Both run soft in the teacher-forced scan (training and the evaluation loss: the expected alignment) and hard in
the decoders (greedy, sampling, beam search), through the registry's `step(..., hard=...)`. Their attention
state is the monotonic alignment of the previous step, α_{i-1}: a distribution over positions when soft, a
one-hot vector (the position t_{i-1}) or all zero (ran off the end) when hard; it starts one-hot at the first
source position (α_0).

monotonic (Raffel et al., 2017, "Online and linear-time attention by enforcing monotonic alignments"):
  e_{i,j} = g vᵀ/‖v‖ tanh(W s_{i-1} + V h_j + b) + r,   p_{i,j} = σ(e_{i,j})
  g starts at 1/√A, r at `model.monotonic_init_r` (negative: early steps do not stop at once). In training,
  Gaussian noise of std `model.monotonic_noise` is added to e before the sigmoid.
  soft, the expected alignment:  α_{i,j} = p_{i,j} Σ_{k≤j} α_{i-1,k} Π_{l=k}^{j-1} (1 − p_{i,l})
    in its parallel form α_i = p_i · cumprod_excl(1 − p_i) · cumsum(α_{i-1} / cumprod_excl(1 − p_i)), taken in
    log space: log α_i = log p_i + L_i + logcumsumexp(log α_{i-1} − L_i) with L_i = cumsum_excl(log(1 − p_i))
    (log p = −softplus(−e), log(1 − p) = −softplus(e)). Nothing is divided by a vanishing product and nothing is
    clamped, so it stays exact when 1 − p underflows. Rows sum to ≤ 1: the rest ran off the end.
  hard: from t_{i-1}, the first j ≥ t_{i-1} with p_{i,j} ≥ 0.5 (that is e_{i,j} ≥ 0) is t_i, α_i = one-hot(t_i)
    and the context is h_{t_i}. If no position stops, α_i = 0 (zero context, as in the paper) and it stays 0 for
    every later step: the alignment has run off the end, as the soft form's lost mass never comes back.
    Positions never move backwards.

mocha (Chiu & Raffel, 2018, "Monotonic chunkwise attention"), chunk width W = `model.mocha_width`:
  a second, additive chunk energy u_{i,j} = v_uᵀ tanh(W_u s_{i-1} + V_u h_j + b_u);
  soft:  β_{i,j} = Σ_{k=j}^{j+W-1} α_{i,k} · exp(u_{i,j}) / Σ_{l=k-W+1}^{k} exp(u_{i,l}),   c_i = Σ_j β_{i,j} h_j
    computed window by window: the softmax of u over each window [k − W + 1, k] (real positions only), weighted
    by α_{i,k} and added back onto the window's positions;
  hard: the softmax of u over t_i − W + 1 … t_i (the same formula with a one-hot α_i); zero once run off.
"""

import jax
import jax.numpy as jnp

from seq2seq_jax.model.energies import (NEG_INF, additive_flops_keys, additive_flops_scores, additive_hidden,
                                        additive_keys, init_additive, masked_softmax, shift)


def init_monotonic(rng, query_size: int, value_size: int, attention_size: int, *, init_r: float, **_) -> dict:
  """Additive parameters plus the scalars g (1/√A) and r (`init_r`)."""
  return {**init_additive(rng, query_size, value_size, attention_size),
          'g': jnp.full((), attention_size ** -0.5), 'r': jnp.full((), init_r)}


def monotonic_state(mask_BxS):
  """α_0: one-hot at the first source position."""
  return {'previous': jnp.zeros(mask_BxS.shape, jnp.float32).at[:, 0].set(1.0)}


def monotonic_energy(params, query_BxQ, keys_BxSxA):
  """e = g vᵀ/‖v‖ tanh(W s + V h + b) + r: (B, S)."""
  v_A = params['v'] * (params['g'] * jax.lax.rsqrt(jnp.sum(params['v'] * params['v'])))
  return additive_hidden(params, query_BxQ, keys_BxSxA) @ v_A + params['r']


def expected_alignment(energy_BxS, previous_BxS, mask_BxS):
  """The soft monotonic alignment α_i from e_i and α_{i-1}, in log space (module docstring); 0 where masked."""
  energy_BxS = jnp.where(mask_BxS, energy_BxS.astype(jnp.float32), 0.0)
  log_p_BxS, log_stay_BxS = -jax.nn.softplus(-energy_BxS), -jax.nn.softplus(energy_BxS)
  log_cumprod_BxS = jnp.cumsum(shift(log_stay_BxS, 1), axis=1)  # exclusive: Σ_{l<j} log(1 − p_l)
  positive_BxS = previous_BxS > 0
  log_previous_BxS = jnp.where(positive_BxS, jnp.log(jnp.where(positive_BxS, previous_BxS, 1.0)), NEG_INF)
  log_sum_BxS = jax.lax.cumlogsumexp(log_previous_BxS - log_cumprod_BxS, axis=1)
  return jnp.where(mask_BxS, jnp.exp(log_p_BxS + log_cumprod_BxS + log_sum_BxS), 0.0)


def hard_alignment(energy_BxS, previous_BxS, mask_BxS):
  """One-hot at the first real j ≥ t_{i-1} with e_{i,j} ≥ 0 (p ≥ 0.5); all zero if none, or if α_{i-1} is."""
  reached_BxS = jnp.cumsum(previous_BxS, axis=1) > 0  # j ≥ t_{i-1}
  stop_BxS = reached_BxS & mask_BxS & (energy_BxS >= 0)
  first_BxS = stop_BxS & (jnp.cumsum(stop_BxS.astype(jnp.int32), axis=1) == 1)
  return first_BxS.astype(jnp.float32)


def monotonic_step(params, query_BxQ, keys_BxSxA, mask_BxS, state, *, hard: bool, noise_BxS=None, **_):
  """(α_i, {'previous': α_i}): soft (with `noise_BxS` added to e, if given) or hard."""
  energy_BxS = monotonic_energy(params, query_BxQ, keys_BxSxA)
  if hard:
    alpha_BxS = hard_alignment(energy_BxS, state['previous'], mask_BxS)
  else:
    if noise_BxS is not None:
      energy_BxS = energy_BxS + noise_BxS
    alpha_BxS = expected_alignment(energy_BxS, state['previous'], mask_BxS)
  return alpha_BxS.astype(keys_BxSxA.dtype), {'previous': alpha_BxS}


def chunk_weights(alpha_BxS, chunk_BxS, mask_BxS, width: int):
  """MoChA's β from the monotonic α and the chunk energies u (module docstring); exactly 0 where masked."""
  # Window k holds positions k - o, o < W: scores (B, S, W) and which of them are real.
  scores_BxSxW = jnp.stack([shift(chunk_BxS, o, 0.0) for o in range(width)], axis=-1)
  real_BxSxW = jnp.stack([shift(mask_BxS, o, False) for o in range(width)], axis=-1)
  share_BxSxW = alpha_BxS[..., None] * masked_softmax(scores_BxSxW, real_BxSxW)
  return sum(shift(share_BxSxW[..., o], -o) for o in range(width))  # window k's share of k - o goes to j = k - o


def init_mocha(rng, query_size: int, value_size: int, attention_size: int, *, init_r: float, **_) -> dict:
  k_mono, k_chunk = jax.random.split(rng)
  return {'monotonic': init_monotonic(k_mono, query_size, value_size, attention_size, init_r=init_r),
          'chunk': init_additive(k_chunk, query_size, value_size, attention_size)}


def mocha_keys(params, values_BxSxD):
  return {'monotonic': additive_keys(params['monotonic'], values_BxSxD),
          'chunk': additive_keys(params['chunk'], values_BxSxD)}


def mocha_step(params, query_BxQ, keys, mask_BxS, state, *, hard: bool, width: int, noise_BxS=None, **_):
  """(β_i, {'previous': α_i}): the chunk weights around the monotonic alignment (soft or hard)."""
  alpha_BxS, new_state = monotonic_step(params['monotonic'], query_BxQ, keys['monotonic'], mask_BxS, state,
                                        hard=hard, noise_BxS=noise_BxS)
  chunk_BxS = additive_hidden(params['chunk'], query_BxQ, keys['chunk']) @ params['chunk']['v']
  return chunk_weights(alpha_BxS, chunk_BxS, mask_BxS, width), new_state


def mocha_flops_keys(c, batch: int, src_len: int) -> int:
  return 2 * additive_flops_keys(c, batch, src_len)


def mocha_flops_scores(c, batch: int, src_len: int) -> int:
  return 2 * additive_flops_scores(c, batch, src_len)
