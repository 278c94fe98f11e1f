"""Beam search and sampling: greedy as a special case, n-best, length penalty, early stop, invariances."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax.data.pipeline import pad_sources
from seq2seq_jax.decoding import beam, sampling
from seq2seq_jax.decoding.fns import allowed_logits
from seq2seq_jax.decoding.greedy import LengthRule, greedy as greedy_search
from tests import decoders
from seq2seq_jax.model import ModelConfig, Seq2Seq
from seq2seq_jax.data.vocab import BOS, EOS, PAD

RULE = dict(a=1.5, b=4, cap=20)
SENTENCES = [[4, 5, 6, 7, 8, 9], [5, 6], [11, 10, 4, 4], [7], [8, 9, 10, 11, 4], [6, 6, 6]]
PAD_TO = 8  # one source shape for almost every test: each new shape costs a compilation
SETTING = dict(beam=4, nbest=3, alpha=0.6)


@functools.lru_cache(maxsize=None)
def _initializer(model):
  dummy = (np.ones((1, 3), np.int32), np.ones((1,), np.int32), np.ones((1, 2), np.int32))
  return jax.jit(lambda key: model.init(key, *dummy)['params'])


def _init(model, seed: int, eos_bias: float = 0.1) -> dict:
  params = _initializer(model)(jax.random.PRNGKey(seed))
  # Sharper and slightly EOS-leaning outputs so that, untrained, hypotheses end at various lengths.
  params['decoder']['out_w'] = params['decoder']['out_w'] * 3.0
  params['decoder']['out_b'] = params['decoder']['out_b'].at[EOS].add(eos_bias)
  return params


@pytest.fixture(scope='module')
def model_and_params():
  model = Seq2Seq(ModelConfig(src_vocab=12, tgt_vocab=12, embed_size=16, encoder_size=16, decoder_size=32,
                              attention_size=16))
  return model, _init(model, 1)


def _batch(sentences, pad_to=PAD_TO):
  """Sources (B, S) and lengths: each sentence, EOS, then PAD; S is `pad_to` or the longest plus EOS."""
  return pad_sources(sentences, pad_to or max(len(x) for x in sentences) + 1)


def _beam(model, params, sentences, pad_to=PAD_TO, *, beam_size, nbest=1, alpha=0.0, early_stop=True) -> dict:
  return decoders.beam(model, params, *_batch(sentences, pad_to), beam_size=beam_size, nbest=nbest, alpha=alpha,
                       early_stop=early_stop, **RULE)


def _hyps(out) -> list[list[list[int]]]:
  tokens, lengths = out['tokens'], out['lengths']
  return [[tokens[i, n, :lengths[i, n]].tolist() for n in range(tokens.shape[1])] for i in range(len(tokens))]


def _setting(**kw):
  s = {**SETTING, **kw}
  return dict(beam_size=s['beam'], nbest=s['nbest'], alpha=s['alpha'])


def test_beam_of_one_is_greedy(model_and_params):
  model, params = model_and_params
  greedy = decoders.greedy(model, params, *_batch(SENTENCES), **RULE)
  out = _beam(model, params, SENTENCES, beam_size=1)
  assert len({int(n) for n in greedy['lengths']}) > 3  # a varied case: several lengths
  np.testing.assert_array_equal(out['tokens'][:, 0], greedy['tokens'])
  np.testing.assert_array_equal(out['lengths'][:, 0], greedy['lengths'])
  np.testing.assert_allclose(out['scores'][:, 0], greedy['scores'], rtol=1e-6)
  np.testing.assert_allclose(out['attn'][:, 0], greedy['attn'], atol=1e-6)


def test_nbest_distinct_sorted_and_scored_like_teacher_forcing(model_and_params):
  model, params = model_and_params
  out = _beam(model, params, SENTENCES, **_setting())
  src, src_len = _batch(SENTENCES)
  limits = np.asarray(LengthRule(**RULE).limits(src_len))
  for i, hyps in enumerate(_hyps(out)):
    assert len({tuple(h) for h in hyps}) == len(hyps)
    assert np.all(np.diff(out['scores'][i]) <= 0) and np.isfinite(out['scores'][i]).all()
    for n, h in enumerate(hyps):
      assert len(h) <= limits[i] and not {PAD, BOS, EOS} & set(h)
      assert out['tokens'][i, n, len(h)] == EOS and (out['tokens'][i, n, len(h) + 1:] == PAD).all()
  # Each hypothesis's score and attention are the model's own, as teacher forcing computes them.
  n_best, steps = out['tokens'].shape[1:]
  tokens = out['tokens'].reshape(-1, steps)
  tgt_in = np.concatenate([np.full((len(tokens), 1), BOS, np.int32), tokens[:, :-1]], axis=1)
  logits, attn = jax.jit(model.apply)({'params': params}, np.repeat(src, n_best, 0), np.repeat(src_len, n_best, 0),
                                       tgt_in)
  logp = jax.nn.log_softmax(jax.vmap(allowed_logits, 1, 1)(logits))
  logp = np.take_along_axis(np.asarray(logp), tokens[..., None], -1)[..., 0]
  lengths = out['lengths'].reshape(-1)
  raw = np.array([logp[r, :lengths[r] + 1].sum() for r in range(len(tokens))]).reshape(-1, n_best)
  np.testing.assert_allclose(out['logprobs'], raw, rtol=1e-5)
  normalised = raw / ((5.0 + out['lengths'] + 1) / 6.0) ** SETTING['alpha']
  np.testing.assert_allclose(out['scores'], normalised, rtol=1e-5)
  attn = np.asarray(attn).reshape(out['attn'].shape)
  for i, n in np.ndindex(out['lengths'].shape):
    end = out['lengths'][i, n] + 1
    np.testing.assert_allclose(out['attn'][i, n, :end], attn[i, n, :end], atol=1e-5)


def test_independent_of_batch_size_order_and_padding(model_and_params):
  model, params = model_and_params
  out = _beam(model, params, SENTENCES, **_setting())
  reference = _hyps(out)
  order = [3, 0, 5, 1, 4, 2]
  shuffled = _beam(model, params, [SENTENCES[i] for i in order], **_setting())
  assert _hyps(shuffled) == [reference[i] for i in order]
  np.testing.assert_allclose(shuffled['scores'], out['scores'][order], rtol=1e-5)
  alone = [_beam(model, params, [s], **_setting()) for s in SENTENCES]
  assert [_hyps(a)[0] for a in alone] == reference
  np.testing.assert_allclose(np.concatenate([a['scores'] for a in alone]), out['scores'], rtol=1e-5)
  padded = _beam(model, params, SENTENCES, pad_to=12, **_setting())
  assert _hyps(padded) == reference
  np.testing.assert_allclose(padded['scores'], out['scores'], rtol=1e-5)


def test_beam_finds_scores_at_least_greedy(model_and_params):
  model, _ = model_and_params
  better = 0
  for seed in range(4):
    params = _init(model, seed)
    g = decoders.greedy(model, params, *_batch(SENTENCES), **RULE)['scores']
    b = _beam(model, params, SENTENCES, beam_size=4)['scores'][:, 0]
    assert (b >= g - 1e-5).all(), (seed, b, g)
    better += int((b > g + 1e-3).sum())
  assert better > 0


@pytest.mark.parametrize('alpha,nbest', [(0.0, 1), (0.6, 3)])
def test_early_stop_never_changes_the_result(model_and_params, alpha, nbest):
  model, _ = model_and_params
  saved = 0
  for seed in range(4):
    params = _init(model, seed)
    early = _beam(model, params, SENTENCES, **_setting(alpha=alpha, nbest=nbest))
    full = _beam(model, params, SENTENCES, **_setting(alpha=alpha, nbest=nbest), early_stop=False)
    assert _hyps(early) == _hyps(full)
    np.testing.assert_array_equal(early['scores'], full['scores'])
    saved += int(full['steps'] - early['steps'])
  assert saved > 0  # it did stop early


class ChainModel:
  """A stand-in for a model, as the decoders see one (`encode`, `step`): its next-token distribution depends
  on the previous token only (`table` rows)."""

  def __init__(self, table_VxV):
    self.logp_VxV = np.log(np.maximum(table_VxV, 1e-9)).astype(np.float32)

  def encode(self, src_BxS, src_len_B):
    return {'h': jnp.zeros((src_BxS.shape[0], 1))}, {'mask': jnp.arange(src_BxS.shape[1]) < src_len_B[:, None]}

  def step(self, carry, y_B, memory):
    return carry, jnp.asarray(self.logp_VxV)[y_B], memory['mask'] / memory['mask'].sum(-1, keepdims=True)


def _chain() -> ChainModel:
  table = np.full((6, 6), 1 / 6)
  table[BOS], table[4], table[5] = 0.0, 0.0, 0.0
  table[BOS, [EOS, 4, 5]] = 0.5, 0.45, 0.05  # "" is likelier than any longer output ...
  table[4, [5, EOS, 4]] = 0.97, 0.02, 0.01   # ... but "4 5" is close, and longer
  table[5, [EOS, 4, 5]] = 0.97, 0.02, 0.01
  return ChainModel(table)


def test_length_penalty_changes_the_ranking():
  short, long = (np.log(0.5), 1), (np.log(0.45 * 0.97 * 0.97), 3)  # (log-prob, length with EOS)
  assert beam.normalise(*short, 0.0) > beam.normalise(*long, 0.0)
  assert beam.normalise(*short, 1.0) < beam.normalise(*long, 1.0)
  assert float(beam.length_penalty(1, 0.7)) == 1.0 and float(beam.length_penalty(7, 1.0)) == 2.0
  model = _chain()
  src = _batch([[4, 4, 4]])
  greedy = greedy_search(model.encode, model.step, *src, LengthRule(**RULE))
  for alpha, best in ((0.0, [[], [4, 5]]), (1.0, [[4, 5], []])):
    out = jax.tree.map(np.asarray, beam.beam_search(model.encode, model.step, *src, LengthRule(**RULE), beam=2, nbest=2,
                                                     alpha=alpha))
    assert _hyps(out)[0] == best, alpha
    np.testing.assert_allclose(out['scores'][0], [beam.normalise(*(short if h == [] else long), alpha)
                                                  for h in best], rtol=1e-5)
  assert greedy['tokens'][0, 0] == EOS


def test_sampling_is_reproducible_and_top_1_is_greedy(model_and_params):
  model, params = model_and_params
  src, src_len = _batch(SENTENCES)
  def run(params, src, src_len, keys):
    return decoders.sample(model, params, src, src_len, keys, **RULE)
  keys = sampling.sentence_keys(0, np.arange(len(SENTENCES)))
  first, again = (run(params, src, src_len, keys) for _ in range(2))
  other = run(params, src, src_len, sampling.sentence_keys(1, np.arange(len(SENTENCES))))
  np.testing.assert_array_equal(first['tokens'], again['tokens'])
  assert (first['tokens'] != other['tokens']).any()
  order = [3, 0, 5, 1, 4, 2]
  shuffled = run(params, src[order], src_len[order], keys[np.array(order)])
  np.testing.assert_array_equal(shuffled['tokens'], first['tokens'][order])
  top1 = decoders.sample(model, params, src, src_len, keys, temperature=0.7, top_k=1, **RULE)
  greedy = decoders.greedy(model, params, src, src_len, **RULE)
  np.testing.assert_array_equal(top1['tokens'], greedy['tokens'])
  np.testing.assert_allclose(top1['scores'], greedy['scores'], rtol=1e-6)  # the model's log-prob, untempered


def test_restrict_keeps_top_k_and_divides_by_temperature():
  logits = jnp.array([[1.0, 3.0, 2.0, -jnp.inf, 0.0]])
  np.testing.assert_array_equal(sampling.restrict(logits, 2.0, 2), [[-jnp.inf, 1.5, 1.0, -jnp.inf, -jnp.inf]])
  np.testing.assert_array_equal(sampling.restrict(logits, 0.5), logits * 2)
