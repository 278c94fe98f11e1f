"""Each attention kind against a plain numpy implementation of its formula, on raw (unprojected) states."""

import chex
import jax
import numpy as np
import pytest

from seq2seq_jax.model import attention

B, S, Q, D, A = 3, 5, 4, 4, 6


def _numpy_softmax(scores, mask):
  w = np.where(mask, np.exp(scores - scores[mask].max()), 0.0)
  return w / w.sum()


def _numpy_attention(kind, s, h, mask, params):
  """Row by row, position by position, straight from the formulas."""
  weights = np.zeros((B, S))
  for b in range(B):
    scores = np.zeros(S)
    for j in range(S):
      if kind == 'additive':
        scores[j] = params['v'] @ np.tanh(s[b] @ params['w_q'] + h[b, j] @ params['u_k'] + params['b'])
      elif kind == 'dot':
        scores[j] = s[b] @ h[b, j]
      elif kind == 'general':
        scores[j] = s[b] @ params['w'] @ h[b, j]
      else:
        scores[j] = s[b] @ h[b, j] / np.sqrt(D)
    weights[b] = _numpy_softmax(scores, mask[b])
  return weights, np.einsum('bs,bsd->bd', weights, h)


@pytest.mark.parametrize('kind', ['additive', 'dot', 'general', 'scaled_dot'])
def test_scorer_matches_numpy(kind):
  rng = np.random.default_rng(0)
  s = rng.normal(size=(B, Q)).astype(np.float32)
  h = rng.normal(size=(B, S, D)).astype(np.float32)
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], bool)
  entry = attention.KINDS[kind]
  params = jax.tree.map(np.asarray, entry.init(jax.random.PRNGKey(1), Q, D, A))
  keys = entry.keys(params, h)
  state = entry.init_state(mask)
  weights = entry.weights(params, s, keys, mask, state)
  context = attention.context(weights, h)
  chex.assert_shape(weights, (B, S))
  chex.assert_shape(context, (B, D))
  want_w, want_c = _numpy_attention(kind, s, h, mask, params)
  np.testing.assert_allclose(weights, want_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(context, want_c, rtol=1e-5, atol=1e-6)
  assert (np.asarray(weights)[~mask] == 0.0).all()  # exactly zero, not just small
  np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, rtol=1e-6)


def test_masked_softmax_all_masked_row_is_zero_and_finite():
  w = attention.masked_softmax(np.ones((2, 3), np.float32), np.array([[1, 0, 1], [0, 0, 0]], bool))
  assert np.isfinite(w).all()
  np.testing.assert_array_equal(np.asarray(w)[1], 0.0)
  np.testing.assert_allclose(np.asarray(w)[0], [0.5, 0.0, 0.5])


def test_masked_positions_get_no_gradient():
  h = np.random.default_rng(0).normal(size=(1, 4, D)).astype(np.float32)
  mask = np.array([[1, 1, 0, 0]], bool)
  s = np.ones((1, Q), np.float32)
  grad = jax.grad(lambda h: attention.context(attention.dot({}, s, h, mask), h).sum())(h)
  np.testing.assert_array_equal(np.asarray(grad)[0, 2:], 0.0)
  assert np.abs(np.asarray(grad)[0, :2]).sum() > 0
