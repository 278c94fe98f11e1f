"""The pointer-generator (model.copy) and tied embeddings: the mixture against a numpy oracle, a distribution
over the extended vocabulary for every attention kind, copying where p_gen is 0, extended ids fed back as UNK,
beam 1 = greedy and batch / order / padding invariance, parameters, and the tied output projection."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax.data.pipeline import pad_sources
from seq2seq_jax.data.vocab import BOS, EOS, UNK
from seq2seq_jax.model import ModelConfig, Seq2Seq, attention, decoder, losses, pointer
from tests import decoders

V = 12  # target (and source) vocabulary: 4 specials + 8 symbols
RULE = dict(a=1.5, b=4, cap=20)
SENTENCES = [[4, 5, 6, 7, 8, 9], [5, 10], [11, 10, 4], [7], [9, 11, 10, 4, 5, 6, 8], [6, 6, 11]]
PAD_TO = 9
KINDS = [dict(attention='additive'), dict(attention='general', style='luong'),
         dict(attention='location', location_filters=4, location_width=3), dict(attention='coverage'),
         dict(attention='monotonic', monotonic_init_r=0.0), dict(attention='mocha', mocha_width=2)]


def extended(sentence):
  """Extended ids as data/copying.py gives them when the target vocabulary lacks symbols 9, 10, 11 of the
  source vocabulary: V + k for the k-th distinct of them in the sentence."""
  oovs = {}
  return [i if i < 9 else V + oovs.setdefault(i, len(oovs)) for i in sentence]


def batch(sentences, pad_to=PAD_TO):
  src, src_len = pad_sources(sentences, pad_to)
  src_ext, _ = pad_sources([extended(s) for s in sentences], pad_to)
  return src, src_len, src_ext


@functools.lru_cache(maxsize=None)
def make(**kw):
  c = ModelConfig(**{**dict(src_vocab=V, tgt_vocab=V, embed_size=8, encoder_size=8, decoder_size=16,
                            attention_size=8, copy=True), **kw})
  model = Seq2Seq(c)
  params = jax.jit(model.init)(jax.random.PRNGKey(3), np.ones((1, 3), np.int32), np.ones((1,), np.int32),
                               np.ones((1, 2), np.int32))['params']
  # a push towards EOS so that, untrained, sentences end at different steps
  params['decoder']['out_b'] = params['decoder']['out_b'].at[EOS].add(0.5)
  return model, params


def forward(model, params, src, src_len, tgt_in, src_ext=None):
  """The teacher-forced output, compiled (op by op, the scans would compile one primitive at a time)."""
  return _forward(model)(params, src, src_len, tgt_in, src_ext)


@functools.lru_cache(maxsize=None)
def _forward(model):
  return jax.jit(lambda p, *args: model.apply({'params': p}, *args[:3], src_ext_BxS=args[3]))


@functools.lru_cache(maxsize=None)
def _method(model, method):
  return jax.jit(lambda p, *args, **kw: model.apply({'params': p}, *args, method=method, **kw))


def copying(params, bias: float, sharpen: float = 30.0):
  """`params` with p_gen's bias set and sharper additive attention scores, so that the attended position
  moves from step to step."""
  dec = params['decoder']
  return {**params, 'decoder': {**dec, 'copy': {**dec['copy'], 'b': jnp.float32(bias)},
                                'attention': {**dec['attention'], 'v': dec['attention']['v'] * sharpen}}}


def test_mixture_equals_a_numpy_oracle():
  rng = np.random.default_rng(0)
  b, t, s = 2, 3, 5
  logits = rng.normal(size=(b, t, V)).astype(np.float32)
  attn = rng.dirichlet(np.ones(s), size=(b, t)).astype(np.float32)
  attn[1, 2] *= 0.6  # a monotonic kind may leave mass unassigned: it goes to the generator
  gate = rng.normal(size=(b, t)).astype(np.float32)
  ext = np.array([[5, V, 5, V + 1, EOS], [V, 7, 7, V, EOS]], np.int32)  # repeated symbols add up
  got = np.exp(np.asarray(pointer.mix(logits, attn, gate, ext), np.float64))

  p_gen = 1 / (1 + np.exp(-gate.astype(np.float64)))
  softmax = np.exp(logits - logits.max(-1, keepdims=True))
  softmax /= softmax.sum(-1, keepdims=True)
  want = np.zeros((b, t, V + s))
  want[..., :V] = (p_gen + (1 - p_gen) * np.maximum(0, 1 - attn.sum(-1)))[..., None] * softmax
  for i in range(b):
    for j in range(s):
      want[i, :, ext[i, j]] += (1 - p_gen[i]) * attn[i, :, j]
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)
  np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-5)
  assert np.isneginf(np.asarray(pointer.mix(logits, attn, gate, ext))[0, :, V + 2:]).all()  # no source holds them


@pytest.mark.parametrize('kw', KINDS, ids=lambda kw: kw['attention'])
def test_a_distribution_over_the_extended_vocabulary_with_finite_gradients(kw):
  model, params = make(**kw)
  src, src_len, src_ext = batch(SENTENCES[:3])
  tgt_out = np.array([[4, V, 5, EOS], [V, EOS, 0, 0], [V + 1, V, 4, EOS]], np.int32)  # copied ids among them
  tgt_in = np.concatenate([np.full((3, 1), BOS, np.int32), tgt_out[:, :-1]], 1)
  out, _ = forward(model, params, src, src_len, tgt_in, src_ext)
  assert out.shape == (3, 4, V + PAD_TO)
  np.testing.assert_allclose(np.exp(np.asarray(out, np.float64)).sum(-1), 1.0, rtol=1e-5)
  assert np.isneginf(np.asarray(out)[1, :, V + 1:]).all()  # sentence 1 has one source symbol outside V

  carry, memory = _method(model, 'encode')(params, src, src_len, src_ext_BxS=src_ext)
  _, step_out, _ = _method(model, 'decode_step')(params, carry, np.full((3,), BOS, np.int32), memory)
  np.testing.assert_allclose(np.exp(np.asarray(step_out, np.float64)).sum(-1), 1.0, rtol=1e-5)
  if attention.KINDS[kw['attention']].step is None:  # (monotonic kinds decode by a hard rule, train soft)
    np.testing.assert_allclose(np.asarray(step_out), np.asarray(out)[:, 0], atol=2e-6)  # training = decoding

  weights = (tgt_out > 0).astype(np.float32)
  def loss(p):
    logp, _ = model.apply({'params': p}, src, src_len, tgt_in, src_ext_BxS=src_ext)
    return losses.cross_entropy(logp, tgt_out, weights, 0.1, smoothing_vocab=V)[0]
  value, grads = jax.jit(jax.value_and_grad(loss))(params)
  assert np.isfinite(value)
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
  assert all(np.abs(np.asarray(g)).max() > 0 for g in jax.tree.leaves(grads['decoder']['copy']))


def test_with_p_gen_zero_each_output_is_the_source_symbol_under_the_attention_argmax():
  model, params = make()
  params = copying(params, bias=-1e4)  # p_gen = σ(-1e4) = 0
  sentences = [[4, 5, 6, 7, 8], [9, 4, 10], [11, 6]]  # no symbol twice
  src, src_len, src_ext = batch(sentences)
  out = decoders.greedy(model, params, src, src_len, src_ext, **RULE)
  limits = np.asarray(decoders.rule(**RULE).limits(src_len))
  chosen = []
  for i in range(len(sentences)):
    steps = out['lengths'][i] + (out['lengths'][i] < limits[i])  # with EOS unless it was forced at the limit
    want = src_ext[i][out['attn'][i, :steps].argmax(-1)]
    np.testing.assert_array_equal(out['tokens'][i, :steps], want)
    chosen += want.tolist()
  assert len(set(chosen)) > 2 and max(chosen) >= V  # several positions, symbols outside the vocabulary among them


def test_an_extended_id_fed_back_is_read_as_unk():
  model, params = make()
  src, src_len, src_ext = batch(SENTENCES[:2])
  carry, memory = _method(model, 'encode')(params, src, src_len, src_ext_BxS=src_ext)
  step = functools.partial(_method(model, 'decode_step'), params)
  as_unk = step(carry, np.full((2,), UNK, np.int32), memory)
  as_ext = step(carry, np.array([V, V + 1], np.int32), memory)
  jax.tree.map(np.testing.assert_array_equal, as_ext, as_unk)


def _hyps(out, nbest=False):
  tokens, lengths = out['tokens'], out['lengths']
  if not nbest:
    return [tokens[i, :lengths[i]].tolist() for i in range(len(tokens))]
  return [[tokens[i, n, :lengths[i, n]].tolist() for n in range(tokens.shape[1])] for i in range(len(tokens))]


@pytest.mark.parametrize('kw', [KINDS[0], KINDS[4]], ids=['additive', 'monotonic'])
def test_beam_one_is_greedy_and_results_ignore_batch_order_and_padding(kw):
  model, params = make(**kw)
  params = copying(params, bias=-2.0, sharpen=10.0)  # mostly copying
  greedy = decoders.greedy(model, params, *batch(SENTENCES), **RULE)
  one = decoders.beam(model, params, *batch(SENTENCES)[:2], src_ext=batch(SENTENCES)[2], beam_size=1, **RULE)
  assert _hyps(greedy) == [h[0] for h in _hyps(one, nbest=True)]
  np.testing.assert_allclose(one['scores'][:, 0], greedy['scores'], rtol=1e-5)
  assert any(t >= V for h in _hyps(greedy) for t in h)  # copied ids are among the outputs

  for search in ('greedy', 'beam'):
    def run(sentences, pad_to=PAD_TO):
      src, src_len, src_ext = batch(sentences, pad_to)
      if search == 'greedy':
        return _hyps(decoders.greedy(model, params, src, src_len, src_ext, **RULE))
      return _hyps(decoders.beam(model, params, src, src_len, src_ext=src_ext, beam_size=3, nbest=2, **RULE), True)
    reference = run(SENTENCES)
    assert [run([s])[0] for s in SENTENCES] == reference
    order = [3, 0, 5, 1, 4, 2]
    assert run([SENTENCES[i] for i in order]) == [reference[i] for i in order]
    assert run(SENTENCES, pad_to=13) == reference  # more padding: a wider extended vocabulary, same results


def test_copy_adds_its_own_parameters_and_changes_no_other():
  plain, copying = make(copy=False)[1], make()[1]
  assert set(copying['decoder']) - set(plain['decoder']) == {'copy'}
  assert {k: v.shape for k, v in copying['decoder']['copy'].items()} == {
      'w_c': (16,), 'w_s': (16,), 'w_x': (8,), 'b': ()}
  copying = {**copying, 'decoder': {k: v for k, v in copying['decoder'].items() if k != 'copy'}}
  jax.tree.map(np.testing.assert_array_equal, copying, plain)


def test_a_copy_model_needs_the_extended_source_ids():
  model, params = make()
  src, src_len, _ = batch(SENTENCES[:1])
  with pytest.raises(ValueError, match='src_ext_BxS'):
    forward(model, params, src, src_len, np.array([[BOS]], np.int32))


def test_tied_embeddings_project_to_the_embedding_and_share_it_with_the_encoder():
  model, params = make(copy=False, tie_embeddings=True)  # features: [s; c] = 16 + 16, embedding 8
  dec = params['decoder']
  assert 'out_w' not in dec and dec['out_proj'].shape == (32, 8)
  features = np.random.default_rng(1).normal(size=(2, 32)).astype(np.float32)
  np.testing.assert_allclose(decoder.logits(dec, model.c, features),
                             features @ dec['out_proj'] @ dec['embed'].T + dec['out_b'], rtol=1e-5, atol=1e-6)
  luong = make(copy=False, tie_embeddings=True, style='luong', attention='general', embed_size=16)[1]
  assert 'out_proj' not in luong['decoder'] and 'out_w' not in luong['decoder']  # features of the embedding's size

  shared_model, shared = make(copy=False, tie_embeddings=True, share_embeddings=True)
  assert 'embed' not in shared['encoder']
  src, src_len, _ = batch(SENTENCES[:2])
  tgt_in = np.array([[BOS, 4], [BOS, 5]], np.int32)
  before, _ = forward(shared_model, shared, src, src_len, tgt_in)
  bumped = {**shared, 'decoder': {**shared['decoder'], 'embed': shared['decoder']['embed'].at[9].add(1.0)}}
  after, _ = forward(shared_model, bumped, src, src_len, tgt_in)
  changed = np.abs(np.asarray(after - before)) > 1e-5
  assert changed[0, :, :9].any()  # symbol 9 is in sentence 0's source: the encoder read the decoder's embedding
  assert changed[1, :, 9].all() and not changed[1, :, :9].any()  # sentence 1: only symbol 9's (tied) logit
  with pytest.raises(ValueError, match='share_embeddings needs tie_embeddings'):
    ModelConfig(src_vocab=V, tgt_vocab=V, share_embeddings=True)
