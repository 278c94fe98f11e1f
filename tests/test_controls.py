"""Decoding controls (decoding/controls.py, sampling.nucleus): hand-built cases on a stand-in chain model where
each control changes the output as specified, the nucleus against a numpy oracle, and on a real model with every
control on: batch, order and padding invariance (of the source and of the prefix) and beam 1 = greedy."""

import jax
import numpy as np
import pytest

from seq2seq_jax.data.vocab import EOS
from seq2seq_jax.decoding import sampling
from seq2seq_jax.decoding.beam import Beam
from seq2seq_jax.decoding.controls import Controls
from seq2seq_jax.decoding.fns import ModelFns
from seq2seq_jax.decoding.greedy import Greedy, LengthRule
from seq2seq_jax.decoding.sampling import Sample
from seq2seq_jax.model import ModelConfig, Seq2Seq
from tests import decoders
from tests.decoders import ChainFns, chain_table, hyps

RULE = LengthRule(1.5, 4, 20)  # a source of 3 symbols: at most 8 output tokens
SOURCE = [4, 4, 4]
CHAIN = ChainFns()
V = 8

# EOS is the likeliest first token; after it, 4 5 4 ... (each step EOS stays the likeliest single token)
EARLY_EOS = chain_table({1: {EOS: .6, 4: .4}, 4: {EOS: .6, 5: .3, 4: .1}, 5: {EOS: .6, 4: .4}}, V)
# Greedy loops 4 5 4 5 ... up to the limit; 6 leads to EOS
LOOP = chain_table({1: {4: .9, EOS: .05, 6: .05}, 4: {5: .8, 6: .1, EOS: .05, 4: .05},
                    5: {4: .8, EOS: .1, 6: .05, 5: .05}, 6: {EOS: .7, 4: .1, 5: .1, 6: .1}}, V)


def _greedy(table, controls=Controls(), sentences=(SOURCE,), **kw):
  out = decoders.run(CHAIN, table, Greedy(RULE, controls), list(sentences), **kw)
  return hyps(out), out['scores'][:, 0]


def _beam1(table, controls=Controls(), sentences=(SOURCE,), **kw):
  out = decoders.run(CHAIN, table, Beam(RULE, 1, controls=controls), list(sentences), **kw)
  return hyps(out), out['logprobs'][:, 0]


def test_min_length_masks_eos_before_it_in_every_decoder():
  assert _greedy(EARLY_EOS)[0] == [[[]]]
  controls = Controls(min_len=3)
  out, score = _greedy(EARLY_EOS, controls)
  assert out == [[[4, 5, 4]]]
  np.testing.assert_allclose(score, [np.log(.4 * .3 * .4 * .6)], rtol=1e-6)  # the model's own log-probability
  assert _beam1(EARLY_EOS, controls)[0] == out
  beam = decoders.run(CHAIN, EARLY_EOS, Beam(RULE, 3, 3, controls=controls), [SOURCE])
  assert all(len(h) >= 3 for h in hyps(beam)[0]) and np.isfinite(beam['scores']).all()
  keys = sampling.sentence_keys(0, np.arange(64))
  free = decoders.run(CHAIN, EARLY_EOS, Sample(RULE), [SOURCE] * 64, keys=keys)
  held = decoders.run(CHAIN, EARLY_EOS, Sample(RULE, controls=controls), [SOURCE] * 64, keys=keys)
  assert (free['lengths'] < 3).any() and (held['lengths'] >= 3).all()
  # The length limit wins: a source of 1 symbol allows 5 tokens, fewer than min_len = 7.
  assert _greedy(EARLY_EOS, Controls(min_len=7), sentences=[[4]])[0] == [[[4, 5, 4, 5, 4]]]


@pytest.mark.parametrize('n,want', [(0, [4, 5] * 4), (1, [4, 5]), (2, [4, 5, 4, 6]), (3, [4, 5, 4, 5])])
def test_no_repeat_ngram_blocks_repeats_in_greedy_and_beam(n, want):
  out, score = _greedy(LOOP, Controls(no_repeat_ngram=n))
  assert out == [[want]]
  assert _beam1(LOOP, Controls(no_repeat_ngram=n)) == (out, pytest.approx(score, rel=1e-6))
  if n == 2:
    np.testing.assert_allclose(score, [np.log(.9 * .8 * .8 * .1 * .7)], rtol=1e-6)
    beam = decoders.run(CHAIN, LOOP, Beam(RULE, 3, 3, controls=Controls(no_repeat_ngram=2)), [SOURCE])
    for h in hyps(beam)[0]:
      assert not _repeats(h, 0, 2), h


def test_a_row_left_with_no_token_ends():
  # After 4, only 4 or EOS may follow: with EOS held back by min_len and 4 blocked, nothing is left -> EOS.
  table = chain_table({1: {4: 1.0}, 4: {4: .99, EOS: .01}}, V)
  out, score = _greedy(table, Controls(min_len=3, no_repeat_ngram=1))
  assert out == [[[4]]]
  np.testing.assert_allclose(score, [np.log(.01)], rtol=1e-5)


def test_forced_prefix_then_free_decoding():
  sentences = [SOURCE, SOURCE, SOURCE, SOURCE]
  prefixes = [[5], [], [6, 6], [4, 5, 4, 5]]
  out, score = _greedy(LOOP, Controls(no_repeat_ngram=2), sentences=sentences, prefixes=prefixes)
  # the prefix wins over n-gram blocking (4 5 4 5 repeats "4 5"), which applies to what follows it
  assert out == [[[5, 4, 5]], [[4, 5, 4, 6]], [[6, 6]], [[4, 5, 4, 5]]]
  np.testing.assert_allclose(score[2:], np.log([.05 * .1 * .7, .9 * .8 * .8 * .8 * .1]), rtol=1e-6)
  assert score[0] < -1e30  # 5 has probability 0 after BOS: still forced, at the lowest finite log-prob
  plain = _greedy(LOOP, sentences=sentences, prefixes=prefixes)[0]
  assert plain[0] == [[5] + [4, 5] * 3 + [4]]  # up to the limit of 8
  beam = decoders.run(CHAIN, LOOP, Beam(RULE, 3, 3), sentences, prefixes=prefixes)
  for got, prefix in zip(hyps(beam), prefixes):
    assert all(h[:len(prefix)] == prefix for h in got), (got, prefix)
  keys = sampling.sentence_keys(0, np.arange(4))
  drawn = decoders.run(CHAIN, LOOP, Sample(RULE, 2.0), sentences, prefixes=prefixes, keys=keys)
  assert all(h[0][:len(p)] == p for h, p in zip(hyps(drawn), prefixes))


def _nucleus_oracle(logits, top_p):
  """Keeps the most likely tokens until their probability reaches top_p (float64)."""
  out = np.full_like(logits, -np.inf)
  for r, row in enumerate(logits.astype(np.float64)):
    probs = np.exp(row - row.max())
    probs /= probs.sum()
    order = np.argsort(-row, kind='stable')
    before = np.cumsum(probs[order]) - probs[order]
    keep = order[before < top_p]
    out[r, keep] = row[keep]
  return out


def test_restrict_keeps_the_nucleus_after_temperature_and_top_k():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(16, 10)).astype(np.float32) * 2
  logits[:, 0] = -np.inf
  for temperature, top_k, top_p in ((1.0, None, 0.9), (0.5, None, 0.5), (2.0, 6, 0.7), (1.0, 3, 0.999)):
    want = logits.copy()
    if top_k:
      kth = np.sort(want, -1)[:, -top_k][:, None]
      want[want < kth] = -np.inf
    want = _nucleus_oracle(want / temperature, top_p)
    got = np.asarray(sampling.restrict(logits, temperature, top_k, top_p))
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=1e-6)
  np.testing.assert_array_equal(sampling.restrict(logits, 0.7, 4, 1.0), sampling.restrict(logits, 0.7, 4))


def test_top_p_sampling_draws_from_the_nucleus_only():
  table = chain_table({1: {4: .5, 5: .3, 6: .15, EOS: .05}, 4: {EOS: 1.}, 5: {EOS: 1.}, 6: {EOS: 1.}}, V)
  keys = sampling.sentence_keys(0, np.arange(256))

  def first_tokens(top_p):
    out = decoders.run(CHAIN, table, Sample(RULE, top_p=top_p), [SOURCE] * 256, keys=keys)
    return set(out['tokens'][:, 0, 0].tolist()), out

  everything, _ = first_tokens(1.0)
  nucleus, out = first_tokens(0.6)
  assert everything == {4, 5, 6, EOS} and nucleus == {4, 5}
  np.testing.assert_allclose(out['scores'][:, 0], np.log(np.where(out['tokens'][:, 0, 0] == 4, .5, .3)), rtol=1e-6)
  assert first_tokens(0.01)[0] == {4}  # only the most likely token: greedy


# A real model with every control on: invariances and beam 1 = greedy.

SENTENCES = [[4, 5, 6, 7, 8, 9], [5, 6], [11, 10, 4, 4], [7], [8, 9, 10, 11, 4], [6, 6, 6]]
PREFIXES = [[5], [], [7, 7], [], [9, 10, 9], [4]]
CONTROLS = Controls(min_len=3, no_repeat_ngram=2)
SEARCHES = {'greedy': Greedy(RULE, CONTROLS), 'beam': Beam(RULE, 3, 2, 0.6, controls=CONTROLS),
            'sample': Sample(RULE, 1.5, None, 0.9, CONTROLS)}


@pytest.fixture(scope='module')
def model_fns():
  model = Seq2Seq(ModelConfig(src_vocab=12, tgt_vocab=12, embed_size=16, encoder_size=16, decoder_size=32,
                              attention_size=16))
  params = jax.jit(model.init)(jax.random.PRNGKey(4), np.ones((1, 3), np.int32), np.ones((1,), np.int32),
                               np.ones((1, 2), np.int32))['params']
  params['decoder']['out_w'] = params['decoder']['out_w'] * 3.0  # sharper: repeats are likely without blocking
  return ModelFns(model), params


def _run(model_fns, name, order=None, **kw):
  fns, params = model_fns
  order = list(range(len(SENTENCES))) if order is None else order
  keys = sampling.sentence_keys(0, np.array(order)) if name == 'sample' else None
  return decoders.run(fns, params, SEARCHES[name], [SENTENCES[i] for i in order],
                      prefixes=[PREFIXES[i] for i in order], keys=keys, **kw)


def _repeats(h, start, n):
  """The n-grams of `h` ending at a position >= `start` (a freely chosen token) that occur earlier in `h`."""
  grams = [tuple(h[i - n + 1:i + 1]) for i in range(n - 1, len(h))]
  return [g for k, g in enumerate(grams) if k + n - 1 >= start and g in grams[:k]]


@pytest.mark.parametrize('name', list(SEARCHES))
def test_controls_keep_batch_order_and_padding_invariance(model_fns, name):
  out = _run(model_fns, name)
  reference = hyps(out)
  limits = np.asarray(RULE.limits(np.array([len(s) + 1 for s in SENTENCES])))
  for got, prefix, limit in zip(reference, PREFIXES, limits):
    for h in got:
      assert h[:len(prefix)] == prefix and min(limit, 3) <= len(h) <= limit
      assert not _repeats(h, len(prefix), 2), h
  order = [3, 0, 5, 1, 4, 2]
  shuffled = _run(model_fns, name, order)
  assert hyps(shuffled) == [reference[i] for i in order]
  np.testing.assert_allclose(shuffled['scores'], out['scores'][order], rtol=1e-5)
  # each sentence alone, its source and prefix padded further (one compiled shape for both invariances)
  alone = [_run(model_fns, name, [i], pad_to=12, prefix_width=6) for i in range(len(SENTENCES))]
  assert [hyps(a)[0] for a in alone] == reference
  np.testing.assert_allclose(np.concatenate([a['scores'] for a in alone]), out['scores'], rtol=1e-5)


def test_beam_of_one_is_greedy_under_the_controls(model_fns):
  greedy = _run(model_fns, 'greedy')
  fns, params = model_fns
  beam1 = decoders.run(fns, params, Beam(RULE, 1, controls=CONTROLS), SENTENCES, prefixes=PREFIXES)
  assert hyps(beam1) == hyps(greedy)
  np.testing.assert_allclose(beam1['scores'], greedy['scores'], rtol=1e-6)
  free = hyps(decoders.run(fns, params, Greedy(RULE), SENTENCES))
  assert free != hyps(greedy)  # the controls changed something
  assert any(_repeats(h, 0, 2) for [h] in free)  # without blocking, bigrams repeat
