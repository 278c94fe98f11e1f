"""The stateful attention kinds (location, coverage, monotonic, mocha) against plain numpy loops written from the
equations of ../shared/notes/methods.md, and the hard monotonic rule on hand-built energies."""

import jax
import numpy as np
import pytest

from seq2seq_jax.model import attention, energies, monotonic

B, S, Q, D, A = 3, 6, 4, 5, 7
MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]], bool)


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(B, Q)).astype(np.float32), rng.normal(size=(B, S, D)).astype(np.float32)


def _history(seed, mask=MASK):
  """A previous and a cumulative weight vector per row: positive on real positions, zero on padding."""
  rng = np.random.default_rng(seed)
  previous = rng.dirichlet(np.ones(S), size=B) * mask
  cumulative = previous + 2 * rng.dirichlet(np.ones(S), size=B) * mask
  return previous.astype(np.float32), cumulative.astype(np.float32)


def _softmax(scores, mask):
  w = np.where(mask, np.exp(scores - scores[mask].max()), 0.0)
  return w / w.sum()


def _params(kind, **settings):
  return jax.tree.map(np.asarray, attention.KINDS[kind].init(jax.random.PRNGKey(3), Q, D, A, **settings))


def test_location_matches_a_numpy_loop_and_ignores_padding():
  width, filters = 4, 3
  params = _params('location', filters=filters, width=width)
  s, h = _inputs()
  previous, cumulative = _history(1)
  conv = params['conv'].reshape(width, 2, filters)  # (offset, channel, filter)
  want = np.zeros((B, S))
  for b in range(B):
    x = np.stack([previous[b], cumulative[b]], -1)
    scores = np.zeros(S)
    for j in range(S):
      f = np.zeros(filters)
      for o in range(width):
        i = j + o - (width - 1) // 2  # 'SAME': zeros outside the sequence
        if 0 <= i < S and MASK[b, i]:
          f += x[i] @ conv[o]
      scores[j] = params['v'] @ np.tanh(s[b] @ params['w_q'] + h[b, j] @ params['u_k'] + f @ params['u_f']
                                        + params['b'])
    want[b] = _softmax(scores, MASK[b])
  kind = attention.KINDS['location']
  keys = kind.keys(params, h)
  got = kind.weights(params, s, keys, MASK, {'previous': previous, 'cumulative': cumulative})
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert (np.asarray(got)[~MASK] == 0.0).all()
  # Garbage in the state at padded positions never reaches a real position's convolution.
  garbage = {'previous': np.where(MASK, previous, 7.0), 'cumulative': np.where(MASK, cumulative, -3.0)}
  np.testing.assert_array_equal(kind.weights(params, s, keys, MASK, garbage), got)
  # The state: the previous weights and their running sum.
  state = kind.update_state(kind.init_state(MASK), got)
  state = kind.update_state(state, want)
  np.testing.assert_array_equal(state['previous'], want.astype(np.float32))
  np.testing.assert_allclose(state['cumulative'], np.asarray(got) + want, rtol=1e-6)


def test_coverage_matches_a_numpy_loop():
  params = _params('coverage')
  params['w_c'] = np.random.default_rng(4).normal(size=A).astype(np.float32)  # (it starts at zero)
  s, h = _inputs(1)
  _, cov = _history(2)
  want = np.zeros((B, S))
  for b in range(B):
    scores = [params['v'] @ np.tanh(h[b, j] @ params['u_k'] + s[b] @ params['w_q'] + params['w_c'] * cov[b, j]
                                    + params['b']) for j in range(S)]
    want[b] = _softmax(np.array(scores), MASK[b])
  kind = attention.KINDS['coverage']
  got = kind.weights(params, s, kind.keys(params, h), MASK, {'coverage': cov})
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert (np.asarray(got)[~MASK] == 0.0).all()
  np.testing.assert_allclose(kind.update_state({'coverage': cov}, got)['coverage'], cov + got, rtol=1e-6)


def _numpy_expected_alignment(e, previous, mask):
  """α_j = p_j Σ_{k≤j} α_{i-1,k} Π_{l=k}^{j-1} (1 − p_l), term by term, in float64."""
  p = 1.0 / (1.0 + np.exp(-e.astype(np.float64)))
  out = np.zeros(e.shape)
  for b in range(e.shape[0]):
    n = int(mask[b].sum())
    for j in range(n):
      out[b, j] = p[b, j] * sum(previous[b, k] * np.prod(1.0 - p[b, k:j]) for k in range(j + 1))
  return out


def test_monotonic_energy_matches_numpy():
  params = _params('monotonic', init_r=-1.5)
  assert float(params['r']) == -1.5 and np.isclose(float(params['g']), A ** -0.5)
  params['g'] = np.float32(2.5)
  s, h = _inputs(2)
  keys = energies.additive_keys(params, h)
  got = monotonic.monotonic_energy(params, s, keys)
  v = params['v'] / np.linalg.norm(params['v'])
  want = [[2.5 * v @ np.tanh(s[b] @ params['w_q'] + h[b, j] @ params['u_k'] + params['b']) - 1.5
           for j in range(S)] for b in range(B)]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('scale', [1.0, 30.0], ids=['moderate', 'extreme'])
def test_expected_alignment_matches_the_recurrence_step_by_step(scale):
  """Several decoder steps, each from the last; 'extreme' energies (|e| up to ~90) make 1 − p underflow in
  float32, where a cumprod divisor would vanish."""
  rng = np.random.default_rng(5)
  mask = MASK
  previous = np.asarray(monotonic.monotonic_state(mask)['previous'])
  want_previous = previous.astype(np.float64)
  for _ in range(5):
    e = (scale * rng.normal(size=(B, S))).astype(np.float32)
    got = np.asarray(monotonic.expected_alignment(e, previous, mask))
    want = _numpy_expected_alignment(e, want_previous, mask)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)
    assert (got[~mask] == 0.0).all()
    assert (got.sum(-1) <= 1.0 + 1e-6).all() and (got >= 0).all()
    previous, want_previous = got, want
  grads = jax.grad(lambda e: monotonic.expected_alignment(e, previous, mask).sum())(
      (scale * rng.normal(size=(B, S))).astype(np.float32))
  assert np.isfinite(np.asarray(grads)).all()


def _numpy_mocha(alpha, u, mask, width):
  """β_j = Σ_{k=j}^{j+w-1} α_k exp(u_j) / Σ_{l=k-w+1}^{k} exp(u_l), windows cut at the sequence's ends."""
  out = np.zeros(alpha.shape)
  for b in range(alpha.shape[0]):
    n = int(mask[b].sum())
    for j in range(n):
      for k in range(j, min(j + width, n)):
        out[b, j] += alpha[b, k] * np.exp(u[b, j]) / sum(np.exp(u[b, l]) for l in range(max(0, k - width + 1), k + 1))
  return out


@pytest.mark.parametrize('width', [1, 2, 4, 8])
def test_mocha_chunk_weights_match_explicit_window_sums(width):
  rng = np.random.default_rng(width)
  alpha = (rng.dirichlet(np.ones(S), size=B) * 0.9 * MASK).astype(np.float32)
  u = (3 * rng.normal(size=(B, S))).astype(np.float32)
  got = np.asarray(monotonic.chunk_weights(alpha, u, MASK, width))
  np.testing.assert_allclose(got, _numpy_mocha(alpha, u, MASK, width), rtol=1e-5, atol=1e-7)
  assert (got[~MASK] == 0.0).all()
  np.testing.assert_allclose(got.sum(-1), alpha.sum(-1), rtol=1e-5)  # β moves α's mass, no more, no less
  if width == 1:
    np.testing.assert_allclose(got, alpha, rtol=1e-6)


def test_mocha_step_chunk_energy_is_additive():
  params = _params('mocha', init_r=0.0)
  s, h = _inputs(3)
  kind = attention.KINDS['mocha']
  keys = kind.keys(params, h)
  state = kind.init_state(MASK)
  beta, new = kind.step(params, s, keys, MASK, state, hard=False, width=3)
  alpha = monotonic.expected_alignment(monotonic.monotonic_energy(params['monotonic'], s, keys['monotonic']),
                                       state['previous'], MASK)
  chunk = params['chunk']
  u = np.array([[chunk['v'] @ np.tanh(s[b] @ chunk['w_q'] + h[b, j] @ chunk['u_k'] + chunk['b']) for j in range(S)]
                for b in range(B)])
  np.testing.assert_allclose(new['previous'], alpha, rtol=1e-6)  # the state is α, not β
  np.testing.assert_allclose(beta, _numpy_mocha(np.asarray(alpha), u, MASK, 3), rtol=1e-5, atol=1e-7)


# Hand-built energies for 6 steps over 6 real positions (+ 2 padded): 10 stops, -10 moves on.
HAND = np.array([[-10, -10, 10, -10, 10, -10, 10, 10],   # -> 2
                 [10, -10, -10, -10, 10, -10, 10, 10],   # position 0 is behind: -> 4
                 [10, 10, 10, 10, -10, 10, 10, 10],      # 4 says move on: -> 5
                 [10, 10, 10, 10, 10, 10, 10, 10],       # stays at 5
                 [-10, -10, -10, -10, -10, -10, 10, 10],  # runs off the end (padding never stops it)
                 [10, 10, 10, 10, 10, 10, 10, 10]], np.float32)  # and stays off
HAND_POSITIONS = [2, 4, 5, 5, None, None]


def test_hard_monotonic_follows_the_soft_mass_and_never_moves_back():
  mask = np.array([[1] * 6 + [0] * 2], bool)
  soft = hard = np.asarray(monotonic.monotonic_state(mask)['previous'])
  for e, want in zip(HAND, HAND_POSITIONS):
    soft = np.asarray(monotonic.expected_alignment(e[None], soft, mask))
    hard = np.asarray(monotonic.hard_alignment(e[None], hard, mask))
    assert set(np.unique(hard)) <= {0.0, 1.0} and hard.sum() <= 1.0
    if want is None:
      assert hard.sum() == 0.0 and soft.sum() < 1e-3
    else:
      assert hard[0, want] == 1.0 and soft.argmax() == want and soft[0, want] > 0.99
  # With random energies: positions never decrease; once run off, always off.
  rng = np.random.default_rng(0)
  mask = MASK
  previous = np.asarray(monotonic.monotonic_state(mask)['previous'])
  last = np.zeros(B, int)
  for _ in range(12):
    previous = np.asarray(monotonic.hard_alignment(rng.normal(size=(B, S)).astype(np.float32) - 0.3, previous, mask))
    on = previous.sum(-1) > 0
    position = previous.argmax(-1)
    assert (position[on] >= last[on]).all() and (previous[~mask] == 0).all()
    last = np.where(on, position, S)  # off the end: no later step may come back


def test_hard_mocha_is_a_softmax_over_the_chunk_ending_at_the_position():
  mask = np.array([[1] * 6 + [0] * 2], bool)
  u = np.random.default_rng(1).normal(size=(1, 8)).astype(np.float32)
  for t in range(6):
    one_hot = np.eye(8, dtype=np.float32)[t][None]
    beta = np.asarray(monotonic.chunk_weights(one_hot, u, mask, 3))
    lo = max(0, t - 2)
    want = np.zeros((1, 8))
    want[0, lo:t + 1] = np.exp(u[0, lo:t + 1]) / np.exp(u[0, lo:t + 1]).sum()
    np.testing.assert_allclose(beta, want, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(monotonic.chunk_weights(np.zeros((1, 8), np.float32), u, mask, 3), 0.0)
