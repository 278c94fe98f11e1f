"""Adding an attention kind is one registry entry: a toy stateful kind, defined here and nowhere else, trains
and decodes through the teacher-forced scan, greedy and beam search, with its state in the decoder's carry."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax import config
from seq2seq_jax.errors import ConfigError
from seq2seq_jax.model import ModelConfig, Seq2Seq, attention, flops
from tests import decoders

RULE = dict(a=1.5, b=4, cap=12)


def _toy_weights(params, query_BxQ, keys_BxSxD, mask_BxS, state):
  """Dot-product scores minus a penalty on positions already attended to (the state: cumulative weights)."""
  scores_BxS = jnp.einsum('bq,bsq->bs', query_BxQ, keys_BxSxD) - params['penalty'] * state['cumulative']
  return attention.masked_softmax(scores_BxS, mask_BxS)


TOY = attention.Kind(
    init=lambda rng, query_size, value_size, attention_size: {'penalty': jnp.ones(())},
    keys=lambda params, values_BxSxD: values_BxSxD,
    weights=_toy_weights,
    init_state=lambda mask_BxS: {'cumulative': jnp.zeros(mask_BxS.shape), 'steps': jnp.zeros(mask_BxS.shape[:1])},
    update_state=lambda state, w_BxS: {'cumulative': state['cumulative'] + w_BxS, 'steps': state['steps'] + 1},
    same_size=True,
    flops_scores=lambda c, batch, src_len: 2 * batch * src_len * c.decoder_size)


@pytest.fixture()
def toy_registered(monkeypatch):
  monkeypatch.setitem(attention.KINDS, 'toy', TOY)


def _model():
  c = ModelConfig(src_vocab=10, tgt_vocab=10, embed_size=8, encoder_size=8, decoder_size=16, attention_size=8,
                  attention='toy')
  model = Seq2Seq(c)
  src = np.array([[4, 5, 6, 7, 2], [5, 6, 2, 0, 0]], np.int32)
  params = model.init(jax.random.PRNGKey(0), src, np.array([5, 3], np.int32), np.ones((2, 4), np.int32))['params']
  return model, params, src, np.array([5, 3], np.int32)


def test_toy_kind_trains_and_its_state_reaches_the_scores(toy_registered):
  model, params, src, src_len = _model()
  tgt_in = np.array([[1, 4, 5, 6], [1, 7, 8, 0]], np.int32)
  _, attn = model.apply({'params': params}, src, src_len, tgt_in)
  np.testing.assert_array_equal(np.asarray(attn)[1, :, 3:], 0.0)  # padding gets exactly nothing
  np.testing.assert_allclose(np.asarray(attn).sum(-1), 1.0, rtol=1e-5)
  grads = jax.grad(lambda p: model.apply({'params': p}, src, src_len, tgt_in)[0].sum())(params)
  assert float(jnp.abs(grads['decoder']['attention']['penalty'])) > 0  # the state changes the scores
  carry, _ = model.apply({'params': params}, src, src_len, method='encode')
  assert set(carry['attention']) == {'cumulative', 'steps'}


def test_toy_kind_decodes_with_beam_one_equal_to_greedy_and_batch_invariant(toy_registered):
  model, params, src, src_len = _model()
  greedy = decoders.greedy(model, params, src, src_len, **RULE)
  beam1 = decoders.beam(model, params, src, src_len, beam_size=1, **RULE)
  np.testing.assert_array_equal(beam1['tokens'][:, 0], greedy['tokens'])
  np.testing.assert_allclose(beam1['attn'][:, 0], greedy['attn'], atol=1e-6)
  alone = decoders.greedy(model, params, src[1:, :3], src_len[1:], **RULE)
  n = int(greedy['lengths'][1])
  np.testing.assert_array_equal(alone['tokens'][0, :n + 1], greedy['tokens'][1, :n + 1])
  beam3 = decoders.beam(model, params, src, src_len, beam_size=3, nbest=2, **RULE)
  assert np.isfinite(beam3['scores']).all()


def test_config_and_flops_read_the_registry(toy_registered):
  cfg = config.default_config()
  cfg.model.attention = 'toy'
  cfg.model.decoder_size = 2 * cfg.model.encoder_size
  config.validate(cfg)
  cfg.model.decoder_size = 7
  with pytest.raises(ConfigError, match="model.attention='toy' needs decoder_size == encoder output size"):
    config.validate(cfg)
  c = ModelConfig(src_vocab=10, tgt_vocab=10, decoder_size=256, encoder_size=128, attention='toy')
  additive = dataclasses.replace(c, attention='dot')
  assert flops.forward(c, 2, 5, 4) == flops.forward(additive, 2, 5, 4)  # toy scores cost what dot's do


def test_an_unknown_kind_is_a_config_error():
  cfg = config.default_config()
  cfg.model.attention = 'toy'
  with pytest.raises(ConfigError, match="config model.attention='toy' is not one of additive, dot"):
    config.validate(cfg)
