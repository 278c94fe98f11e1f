"""The encoder is padding-correct: padded positions change no output, final state or gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax.model import cells, encoder


def test_reverse_padded():
  x = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])
  np.testing.assert_array_equal(cells.reverse_padded(x.T, np.array([3, 5])).T, [[3, 2, 1, 0, 0], [8, 7, 6, 5, 4]])


@pytest.mark.parametrize('cell', ['gru', 'lstm'])
@pytest.mark.parametrize('bidirectional', [False, True])
def test_padding_changes_nothing(cell, bidirectional):
  params = encoder.init(jax.random.PRNGKey(0), cell, 10, 8, 6, 2, bidirectional)
  src = np.array([[4, 5, 6, 2], [7, 2, 0, 0]], np.int32)
  lengths = np.array([4, 2], np.int32)
  out, finals = encoder.encode(params, cell, src, lengths)
  # The same sentences with three more padding positions, and with garbage (not PAD) ids in the padding.
  padded = np.concatenate([src, np.full((2, 3), 9, np.int32)], axis=1)
  padded[1, 2:] = 9
  out2, finals2 = encoder.encode(params, cell, padded, lengths)
  np.testing.assert_allclose(out2[:, :4], out, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(out2)[1, 2:], 0.0)
  for a, b in zip(jax.tree.leaves(finals), jax.tree.leaves(finals2)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  # Each sentence alone gives the same result as in the batch (the final state comes from its true length).
  alone, finals_alone = encoder.encode(params, cell, src[1:, :2], lengths[1:])
  np.testing.assert_allclose(out[1:, :2], alone, atol=1e-6)
  for a, b in zip(jax.tree.leaves(finals), jax.tree.leaves(finals_alone)):
    np.testing.assert_allclose(np.asarray(a)[:, 1:], b, atol=1e-6)


def test_backward_direction_final_state_reads_first_symbol_last():
  """The backward final state of a sequence must depend on its first symbol (it is read last)."""
  params = encoder.init(jax.random.PRNGKey(1), 'gru', 10, 8, 6, 1, True)
  a = encoder.encode(params, 'gru', np.array([[4, 5, 2, 0]]), np.array([3]))[1][0][0]
  b = encoder.encode(params, 'gru', np.array([[6, 5, 2, 0]]), np.array([3]))[1][0][0]
  assert np.abs(np.asarray(a[1]) - np.asarray(b[1])).max() > 1e-4


def test_no_gradient_reaches_padding_embeddings():
  params = encoder.init(jax.random.PRNGKey(0), 'gru', 10, 8, 6, 1, True)
  src = np.array([[4, 5, 2, 9, 9]], np.int32)  # id 9 only appears in the padding

  def loss(p):
    out, finals = encoder.encode(p, 'gru', src, np.array([3]))
    return out.sum() + sum(jnp.sum(x) for x in jax.tree.leaves(finals))

  g = jax.grad(loss)(params)['embed']
  np.testing.assert_array_equal(np.asarray(g)[9], 0.0)
  assert np.abs(np.asarray(g)[4]).sum() > 0
