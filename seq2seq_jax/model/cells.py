"""GRU and LSTM cells as pure functions (one `Cell` entry each in `CELLS`), and a length-aware scan over time.

For speed, all gates share one matrix: the input-to-hidden projection of every time step is one matmul per
direction done before the scan (in `run`), and each step does one (B, H) x (H, G) matmul for the recurrence.
Parameters carry a leading direction axis R (1, or 2 for a bidirectional layer) so that both directions of
a layer run in the same scan. A cell state is a tuple: GRU (h,), LSTM (h, c).

  GRU:  r, z = σ(x W_r + h U_r + b), n = tanh(x W_n + b_n + r ⊙ (h U_n + b_hn)), h' = (1 - z) ⊙ n + z ⊙ h
  LSTM: i, f, g, o = x W + h U + b;  c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g);  h' = σ(o) ⊙ tanh(c')
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp


def _gru(xp_RxBxG, gh_RxBxG, state: tuple) -> tuple:
  xr, xz, xn = jnp.split(xp_RxBxG, 3, axis=-1)
  hr, hz, hn = jnp.split(gh_RxBxG, 3, axis=-1)
  r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
  n = jnp.tanh(xn + r * hn)
  return ((1.0 - z) * n + z * state[0],)


def _lstm(xp_RxBxG, gh_RxBxG, state: tuple) -> tuple:
  i, f, g, o = jnp.split(xp_RxBxG + gh_RxBxG, 4, axis=-1)
  c = jax.nn.sigmoid(f) * state[1] + jax.nn.sigmoid(i) * jnp.tanh(g)
  return (jax.nn.sigmoid(o) * jnp.tanh(c), c)


def _lstm_bias(b_in_RxG, hidden: int):
  """Forget-gate bias 1: remember by default."""
  return b_in_RxG.at[:, hidden:2 * hidden].set(1.0)


@dataclasses.dataclass(frozen=True)
class Cell:
  """One recurrent cell: `gates` blocks of H columns in the fused matrices; a state of `num_states` (B, H)
  arrays, h first; `update(xp, gh, state) -> state` from the input and recurrent projections (biases
  included); `init_bias(b_in, hidden)` adjusts the initial input bias."""
  gates: int
  num_states: int
  update: Callable
  init_bias: Callable = lambda b_in_RxG, hidden: b_in_RxG


CELLS: dict[str, Cell] = {'gru': Cell(gates=3, num_states=1, update=_gru),
                          'lstm': Cell(gates=4, num_states=2, update=_lstm, init_bias=_lstm_bias)}


def init(rng, cell: str, in_size: int, hidden: int, directions: int = 1) -> dict:
  """Parameters of one layer: w_in (R, I, G), w_h (R, H, G), b_in (R, G), b_h (R, G); G = gates * H."""
  gates = CELLS[cell].gates
  g = gates * hidden
  k_in, k_h = jax.random.split(rng)
  w_in = jax.nn.initializers.glorot_uniform()(k_in, (directions, in_size, g))
  # One orthogonal block per gate keeps the recurrence well conditioned at the start.
  w_h = jax.vmap(lambda k: jnp.concatenate(
      [jax.nn.initializers.orthogonal()(kk, (hidden, hidden)) for kk in jax.random.split(k, gates)],
      axis=1))(jax.random.split(k_h, directions))
  b_in = CELLS[cell].init_bias(jnp.zeros((directions, g)), hidden)
  return {'w_in': w_in, 'w_h': w_h, 'b_in': b_in, 'b_h': jnp.zeros((directions, g))}


def zero_state(cell: str, batch_shape: tuple, hidden: int, dtype=jnp.float32) -> tuple:
  return (jnp.zeros(batch_shape + (hidden,), dtype),) * CELLS[cell].num_states


def step(cell: str, params: dict, state: tuple, xp_RxBxG: jax.Array) -> tuple:
  """One time step for all directions; `xp` is the step's input-to-hidden projection (with b_in)."""
  h_RxBxH = state[0]
  # One plain 2-D matmul per direction: XLA:CPU runs these much faster than one batched 3-D dot.
  gh_RxBxG = jnp.stack([h_RxBxH[r] @ params['w_h'][r] for r in range(h_RxBxH.shape[0])]) + params['b_h'][:, None, :]
  return CELLS[cell].update(xp_RxBxG, gh_RxBxG, state)


@jax.custom_vjp
def reverse_padded(x_TxB: jax.Array, lengths_B: jax.Array) -> jax.Array:
  """Reverses the first `length` time steps (axis 0) of each sequence (axis 1); padding stays where it is."""
  t_T = jnp.arange(x_TxB.shape[0])
  idx_TxB = jnp.where(t_T[:, None] < lengths_B[None, :], lengths_B[None, :] - 1 - t_T[:, None], t_T[:, None])
  idx = idx_TxB.reshape(idx_TxB.shape + (1,) * (x_TxB.ndim - 2))
  return jnp.take_along_axis(x_TxB, idx, axis=0)


# The reversal is its own inverse, so its gradient is the same gather (not the scatter-add autodiff would use).
reverse_padded.defvjp(lambda x, lengths: (reverse_padded(x, lengths), lengths),
                      lambda lengths, g: (reverse_padded(g, lengths), None))


def run(cell: str, params: dict, x_TxBxI: jax.Array, lengths_B: jax.Array, state0: tuple,
        unroll: int = 1, remat: bool = False) -> tuple[jax.Array, tuple]:
  """Runs a layer over a time-major batch. Direction 0 reads forward; direction 1 (if present) backward.

  The input-to-hidden projection of all steps is one (T*B, I) x (I, G) matmul per direction, before the scan.
  Padded positions (t >= length) neither change the state nor produce output (zeros), so each row's final
  state is the state after its last real position, in both directions. `remat` recomputes each step in the
  backward pass instead of storing its gate activations.
  Returns outputs (T, B, R*H) (directions concatenated) and the final state (tuple of (R, B, H)).
  """
  directions = params['w_in'].shape[0]
  steps = x_TxBxI.shape[0]
  inputs = [x_TxBxI, reverse_padded(x_TxBxI, lengths_B)][:directions]
  xp_TxRxBxG = jnp.stack([x @ params['w_in'][r] + params['b_in'][r] for r, x in enumerate(inputs)], axis=1)
  mask_TxB = jnp.arange(steps)[:, None] < lengths_B[None, :]

  def body(state, inputs):
    xp_RxBxG, m_B = inputs
    new = step(cell, params, state, xp_RxBxG)
    state = tuple(jnp.where(m_B[None, :, None], n, s) for n, s in zip(new, state))
    return state, state[0] * m_B[None, :, None]

  body = jax.checkpoint(body) if remat else body
  final, out_TxRxBxH = jax.lax.scan(body, state0, (xp_TxRxBxG, mask_TxB), unroll=unroll)
  outs = [out_TxRxBxH[:, 0], reverse_padded(out_TxRxBxH[:, 1], lengths_B)][:directions]
  return jnp.concatenate(outs, axis=-1), final
