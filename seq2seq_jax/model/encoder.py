"""The encoder: embeddings and a stack of (bidirectional) GRU/LSTM layers, as pure functions.

B batch, S source positions, E embedding size, H units per direction, R directions (1 or 2), D = R * H.
"""

import jax
import jax.numpy as jnp

from seq2seq_jax.model import cells


def init(rng, cell: str, vocab_size: int, embed_size: int, hidden: int, num_layers: int,
         bidirectional: bool) -> dict:
  directions = 2 if bidirectional else 1
  keys = jax.random.split(rng, num_layers + 1)
  layers = [cells.init(keys[i + 1], cell, embed_size if i == 0 else directions * hidden, hidden, directions)
            for i in range(num_layers)]
  return {'embed': jax.random.normal(keys[0], (vocab_size, embed_size)) * embed_size ** -0.5,
          'layers': layers}


def dropout(rng, x: jax.Array, rate: float) -> jax.Array:
  """Inverted dropout; identity when `rng` is None or rate is 0."""
  if rng is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def encode(params: dict, cell: str, src_BxS: jax.Array, lengths_B: jax.Array, *, dropout_rate: float = 0.0,
           rng=None, unroll: int = 1, remat: bool = False) -> tuple[jax.Array, list]:
  """Returns the top layer's outputs (B, S, D), zero at padding, and each layer's final state.

  The final state of layer l is a tuple (h, [c]) of (R, B, H) arrays: each direction's state after the
  last real symbol of every sequence.
  """
  num_layers = len(params['layers'])
  rngs = list(jax.random.split(rng, num_layers + 1)) if rng is not None else [None] * (num_layers + 1)
  x_SxBxI = dropout(rngs[0], params['embed'][src_BxS.T], dropout_rate)
  finals = []
  for i, layer in enumerate(params['layers']):
    directions, hidden = layer['w_h'].shape[:2]
    if i > 0:
      x_SxBxI = dropout(rngs[i], x_SxBxI, dropout_rate)
    state0 = cells.zero_state(cell, (directions, src_BxS.shape[0]), hidden, x_SxBxI.dtype)
    x_SxBxI, final = cells.run(cell, layer, x_SxBxI, lengths_B, state0, unroll, remat)
    finals.append(final)
  return jnp.swapaxes(x_SxBxI, 0, 1), finals
