"""Greedy decoding: agrees with teacher forcing on its own outputs; independent of batch, order, padding."""

import jax
import numpy as np
import pytest

from seq2seq_jax.data.pipeline import pad_sources
from seq2seq_jax.decoding.fns import allowed_logits
from seq2seq_jax.decoding.greedy import LengthRule
from tests import decoders
from seq2seq_jax.model import ModelConfig, Seq2Seq
from seq2seq_jax.data.vocab import BOS, EOS, PAD

RULE = dict(a=1.5, b=4, cap=20)


@pytest.fixture(scope='module', params=[('bahdanau', 0.2), ('luong', 0.1)], ids=['bahdanau', 'luong'])
def model_and_params(request):
  style, eos_bias = request.param
  c = ModelConfig(src_vocab=12, tgt_vocab=12, embed_size=16, encoder_size=16, decoder_size=32, attention_size=16,
                  style=style, attention='additive' if style == 'bahdanau' else 'general')
  model = Seq2Seq(c)
  params = model.init(jax.random.PRNGKey(7), np.ones((1, 3), np.int32), np.ones((1,), np.int32),
                      np.ones((1, 2), np.int32))['params']
  # A small push towards EOS so that, untrained, sentences end at different steps, some before their limit.
  params['decoder']['out_b'] = params['decoder']['out_b'].at[EOS].add(eos_bias)
  return model, params


def _batch(sentences, pad_to=None):
  """Sources (B, S) and lengths: each sentence, EOS, then PAD; S is `pad_to` or the longest plus EOS."""
  return pad_sources(sentences, pad_to or max(len(x) for x in sentences) + 1)


SENTENCES = [[4, 5, 6, 7, 8, 9], [5, 6], [11, 10, 4, 4], [7], [8, 9, 10, 11, 4, 5, 6, 7], [6, 6, 6]]


def _decode(model, params, sentences, pad_to=None):
  src, src_len = _batch(sentences, pad_to)
  out = decoders.greedy(model, params, src, src_len, **RULE)
  return [out['tokens'][i, :out['lengths'][i]].tolist() for i in range(len(sentences))], out, src, src_len


def test_greedy_stops_and_respects_limits(model_and_params):
  model, params = model_and_params
  hyps, out, _, src_len = _decode(model, params, SENTENCES)
  limits = np.asarray(LengthRule(**RULE).limits(src_len))
  for i, h in enumerate(hyps):
    assert len(h) <= limits[i]
    assert EOS not in h and PAD not in h
    assert out['tokens'][i, len(h)] == EOS            # each sentence ends with EOS ...
    assert (out['tokens'][i, len(h) + 1:] == PAD).all()  # ... and nothing follows it
  assert len({len(h) for h in hyps}) > 2  # sentences end at different steps
  assert any(0 < len(h) < limits[i] for i, h in enumerate(hyps))  # some by their own EOS


def test_teacher_forcing_on_own_output_reproduces_argmax(model_and_params):
  model, params = model_and_params
  hyps, out, src, src_len = _decode(model, params, SENTENCES)
  steps = out['tokens'].shape[1]
  tgt_in = np.full((len(hyps), steps), PAD, np.int32)
  tgt_in[:, 0] = BOS
  tgt_in[:, 1:] = out['tokens'][:, :-1]
  logits, attn = model.apply({'params': params}, src, src_len, tgt_in)
  argmax = np.asarray(jax.vmap(allowed_logits, 1, 1)(logits).argmax(-1))
  for i, h in enumerate(hyps):
    n = len(h)
    forced_eos = n == int(LengthRule(**RULE).limits(src_len)[i])
    np.testing.assert_array_equal(argmax[i, :n], h)
    if not forced_eos:
      assert argmax[i, n] == EOS
    np.testing.assert_allclose(np.asarray(attn)[i, :n + 1], out['attn'][i, :n + 1], atol=1e-5)


def test_independent_of_batch_size_order_and_padding(model_and_params):
  model, params = model_and_params
  reference, out, _, _ = _decode(model, params, SENTENCES)
  alone = [_decode(model, params, [s])[0][0] for s in SENTENCES]
  assert alone == reference
  order = [3, 0, 5, 1, 4, 2]
  shuffled = _decode(model, params, [SENTENCES[i] for i in order])[0]
  assert shuffled == [reference[i] for i in order]
  padded, out_padded, _, _ = _decode(model, params, SENTENCES, pad_to=16)
  assert padded == reference
  np.testing.assert_allclose(out_padded['scores'], out['scores'], rtol=1e-5)
