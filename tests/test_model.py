"""The encoder-decoder: shapes and dtypes, padding invariance, gradients, scheduled sampling."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax.model import losses
from seq2seq_jax.model import ModelConfig, Seq2Seq

SRC = np.array([[4, 5, 6, 7, 2], [5, 6, 2, 0, 0]], np.int32)
SRC_LEN = np.array([5, 3], np.int32)
TGT_IN = np.array([[1, 4, 5, 6], [1, 7, 0, 0]], np.int32)
TGT_OUT = np.array([[4, 5, 6, 2], [7, 2, 0, 0]], np.int32)
WEIGHTS = (TGT_OUT > 0).astype(np.float32)

VARIANTS = [
    dict(cell='gru', attention='additive', style='bahdanau'),
    dict(cell='lstm', attention='additive', style='bahdanau', num_layers=2),
    dict(cell='gru', attention='general', style='luong'),
    dict(cell='lstm', attention='dot', style='luong', input_feeding=False),
    dict(cell='gru', attention='scaled_dot', style='bahdanau', bidirectional=False, encoder_size=16),
    dict(cell='gru', attention='none', style='bahdanau', num_layers=2),
]


def make(**kw):
  base = dict(src_vocab=9, tgt_vocab=11, embed_size=8, encoder_size=8, decoder_size=16, attention_size=8)
  c = ModelConfig(**{**base, **kw})
  model = Seq2Seq(c)
  params = model.init(jax.random.PRNGKey(0), SRC, SRC_LEN, TGT_IN)['params']
  return model, params


@pytest.mark.parametrize('kw', VARIANTS, ids=lambda kw: '-'.join(str(v) for v in kw.values()))
def test_shapes_dtypes_and_gradients(kw):
  model, params = make(**kw)
  logits, attn = model.apply({'params': params}, SRC, SRC_LEN, TGT_IN)
  chex.assert_shape(logits, (2, 4, 11))
  chex.assert_shape(attn, (2, 4, 5))
  chex.assert_type([logits, attn], jnp.float32)
  if kw['attention'] != 'none':  # attention over real positions sums to one, padding gets none
    np.testing.assert_allclose(attn[0].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(attn)[1, :, 3:], 0.0)

  def loss(p):
    total, n = losses.cross_entropy(model.apply({'params': p}, SRC, SRC_LEN, TGT_IN)[0], TGT_OUT, WEIGHTS)
    return total / n

  grads = jax.grad(loss)(params)
  chex.assert_tree_all_finite(grads)
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  for path, g in flat:
    name = jax.tree_util.keystr(path)
    if 'embed' in name:  # only the rows of ids that occur get gradient
      continue
    if kw['cell'] == 'gru' and kw.get('num_layers', 1) == 1 and 'bridge' in name and 'w_c' in name:
      continue
    assert np.abs(np.asarray(g)).max() > 0, f'zero gradient for {name}'


@pytest.mark.parametrize('kw', VARIANTS[:4], ids=lambda kw: '-'.join(str(v) for v in kw.values()))
def test_padding_and_batch_mates_change_nothing(kw):
  model, params = make(**kw)
  logits, attn = model.apply({'params': params}, SRC, SRC_LEN, TGT_IN)
  # Sentence 1 alone, with more source padding (garbage ids) and more target padding.
  src = np.array([[5, 6, 2, 8, 8, 8, 8]], np.int32)
  tgt = np.array([[1, 7, 3, 3, 3, 3]], np.int32)
  alone, attn_alone = model.apply({'params': params}, src, SRC_LEN[1:], tgt)
  np.testing.assert_allclose(alone[0, :2], logits[1, :2], atol=1e-5)
  np.testing.assert_allclose(attn_alone[0, :2, :3], attn[1, :2, :3], atol=1e-6)
  np.testing.assert_array_equal(np.asarray(attn_alone)[0, :, 3:], 0.0)


def test_scheduled_sampling():
  model, params = make(cell='gru', attention='additive', style='bahdanau')
  teacher, _ = model.apply({'params': params}, SRC, SRC_LEN, TGT_IN)

  def run(ratio, seed):
    return model.apply({'params': params}, SRC, SRC_LEN, TGT_IN, train=True, tf_ratio=ratio, sample=True,
                       rngs={'sampling': jax.random.PRNGKey(seed)})[0]

  np.testing.assert_allclose(run(1.0, 0), teacher, atol=1e-6)        # ratio 1: always the gold token
  np.testing.assert_allclose(run(0.0, 3), run(0.0, 3), atol=0)        # same key, same result
  sampled = run(0.0, 3)
  np.testing.assert_allclose(sampled[:, 0], teacher[:, 0], atol=1e-6)  # the first input is always BOS
  assert np.abs(np.asarray(sampled[:, 1:] - teacher[:, 1:])).max() > 1e-4
  assert np.abs(np.asarray(run(0.0, 4) - sampled)).max() > 1e-4   # another key samples other tokens


def test_dropout_only_in_training_and_keyed():
  model, params = make(cell='gru', attention='additive', style='bahdanau', dropout=0.3)
  plain = model.apply({'params': params}, SRC, SRC_LEN, TGT_IN)[0]
  a = model.apply({'params': params}, SRC, SRC_LEN, TGT_IN, train=True, rngs={'dropout': jax.random.PRNGKey(1)})[0]
  b = model.apply({'params': params}, SRC, SRC_LEN, TGT_IN, train=True, rngs={'dropout': jax.random.PRNGKey(1)})[0]
  np.testing.assert_array_equal(a, b)
  assert np.abs(np.asarray(a - plain)).max() > 1e-4
  np.testing.assert_array_equal(plain, model.apply({'params': params}, SRC, SRC_LEN, TGT_IN)[0])


def _loss_and_grads(model, params):
  def loss(p):
    logits, _ = model.apply({'params': p}, SRC, SRC_LEN, TGT_IN)
    return losses.cross_entropy(logits, TGT_OUT, WEIGHTS)[0]
  return jax.value_and_grad(loss)(params)


@pytest.mark.parametrize('kw', VARIANTS[:3], ids=lambda kw: '-'.join(str(v) for v in kw.values()))
def test_remat_changes_no_number(kw):
  model, params = make(**kw)
  remat_model, _ = make(**kw, remat=True)
  chex.assert_trees_all_close(_loss_and_grads(remat_model, params), _loss_and_grads(model, params), rtol=1e-6)


@pytest.mark.parametrize('kw', VARIANTS[:3], ids=lambda kw: '-'.join(str(v) for v in kw.values()))
def test_bfloat16_compute_keeps_float32_params_and_is_close(kw):
  model, params = make(**kw)
  bf16_model, _ = make(**kw, compute_dtype='bfloat16')
  logits, _ = bf16_model.apply({'params': params}, SRC, SRC_LEN, TGT_IN)
  assert logits.dtype == jnp.float32   # the loss is taken in float32
  (loss16, grads16), (loss32, grads32) = _loss_and_grads(bf16_model, params), _loss_and_grads(model, params)
  chex.assert_trees_all_equal_dtypes(grads16, params)  # gradients reach the float32 parameters
  np.testing.assert_allclose(loss16, loss32, rtol=2e-2)
  g16, g32 = jnp.concatenate([x.ravel() for x in jax.tree.leaves(grads16)]), \
      jnp.concatenate([x.ravel() for x in jax.tree.leaves(grads32)])
  assert jnp.dot(g16, g32) / (jnp.linalg.norm(g16) * jnp.linalg.norm(g32)) > 0.99  # same direction
