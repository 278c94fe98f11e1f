"""The attention decoder as pure functions: one step, and the teacher-forced scan over that same step.

B batch, S source positions, T target steps, E embedding size, H decoder units, D encoder output size,
G gate width of the first decoder layer, F output feature size, V target vocabulary.

Styles (`c` is the model's `ModelConfig`):
  bahdanau  c_t = attend(s_{t-1});  s_t = cell(s_{t-1}, [e(y_{t-1}); c_t]);  features [s_t; c_t]
  luong     s_t = cell(s_{t-1}, [e(y_{t-1}); h̃_{t-1}]);  c_t = attend(s_t);  h̃_t = tanh(W_c [c_t; s_t])
            (input feeding: h̃_{t-1} is fed back; without it the input is e(y_{t-1}) alone)
  none      c = the encoder's final state at every step;  s_t = cell(s_{t-1}, [e(y_{t-1}); c])
Logits are `features @ W_out + b_out`.
"""

import jax
import jax.numpy as jnp

from seq2seq_jax import attention, cells
from seq2seq_jax.encoder import dropout


def _extra_size(c) -> int:
  """Size of what the first layer reads beside the embedding."""
  if c.style == 'luong':
    return c.decoder_size if c.input_feeding else 0
  return c.memory_size


def feature_size(c) -> int:
  return c.decoder_size if c.style == 'luong' else c.decoder_size + c.memory_size


def init(rng, c) -> dict:
  k = iter(jax.random.split(rng, 2 * c.num_layers + 6))
  glorot = jax.nn.initializers.glorot_uniform()
  h = c.decoder_size
  layers = [cells.init(next(k), c.cell, c.embed_size + _extra_size(c) if i == 0 else h, h)
            for i in range(c.num_layers)]
  bridge = [{'w_h': glorot(next(k), (c.memory_size, h)), 'b_h': jnp.zeros((h,)),
             'w_c': glorot(next(k), (c.memory_size, h)), 'b_c': jnp.zeros((h,))} for _ in range(c.num_layers)]
  if c.cell == 'gru':
    bridge = [{'w_h': b['w_h'], 'b_h': b['b_h']} for b in bridge]
  params = {'embed': jax.random.normal(next(k), (c.tgt_vocab, c.embed_size)) * c.embed_size ** -0.5,
            'layers': layers, 'bridge': bridge,
            'attention': attention.init(next(k), c.attention, h, c.memory_size, c.attention_size),
            'out_w': glorot(next(k), (feature_size(c), c.tgt_vocab)), 'out_b': jnp.zeros((c.tgt_vocab,))}
  if c.style == 'luong':
    params['combine_w'] = glorot(next(k), (c.memory_size + h, h))
    params['combine_b'] = jnp.zeros((h,))
  return params


def prepare(params, c, memory_BxSxD, lengths_B, enc_finals) -> tuple[dict, dict]:
  """From the encoder's outputs to the decoder's (initial carry, memory); keys are projected here, once."""
  def both_directions(x_RxBxH):
    return jnp.concatenate(list(x_RxBxH), axis=-1)
  states = []
  for final, b in zip(enc_finals, params['bridge']):
    h0 = jnp.tanh(both_directions(final[0]) @ b['w_h'] + b['b_h'])
    states.append((h0,) if c.cell == 'gru' else (h0, both_directions(final[1]) @ b['w_c'] + b['b_c']))
  batch = memory_BxSxD.shape[0]
  carry = {'states': states, 'feed': jnp.zeros((batch, c.decoder_size), memory_BxSxD.dtype)}
  memory = {'values': memory_BxSxD,
            'keys': attention.project_keys(c.attention, params['attention'], memory_BxSxD),
            'mask': jnp.arange(memory_BxSxD.shape[1])[None, :] < lengths_B[:, None],
            'context': both_directions(enc_finals[-1][0])}
  return carry, memory


TABLE_VOCAB = 1024  # decoding looks small vocabularies up in a projected (V, G) table


def embed(params, c, y, emb_mask=None, table: bool = False) -> jax.Array:
  """Embeds target ids (any leading shape) and projects them to the first layer's gates: (..., G).

  `table` (decoding): with a small vocabulary (characters, phones) the whole vocabulary is projected and `y`
  looked up in that (V, G) table; in a decoding loop the table is loop-invariant, so each step does a gather
  instead of a (B, E) x (E, G) matmul. The choice depends on V only, never on the batch.
  """
  layer = params['layers'][0]
  def project(e):
    return e @ layer['w_in'][0, :c.embed_size] + layer['b_in'][0]
  if table and emb_mask is None and c.tgt_vocab <= TABLE_VOCAB:
    return project(params['embed'])[y]
  e = params['embed'][y]
  return project(e if emb_mask is None else e * emb_mask)


def step(params, c, carry: dict, yp_BxG, memory: dict) -> tuple[dict, jax.Array, jax.Array]:
  """One decoder step from the embedded previous token. Returns (carry, features (B, F), attention (B, S))."""
  def attend(query_BxH):
    if c.attention == 'none':
      return jnp.zeros(memory['mask'].shape, query_BxH.dtype), memory['context']
    # Recomputed in the backward pass: storing its (B, S, A) activations for every step costs more than that.
    scorer = jax.checkpoint(attention.SCORERS[c.attention])
    return scorer(query_BxH, memory['keys'], memory['values'], memory['mask'], params['attention'])

  if c.style == 'bahdanau':
    attn_BxS, extra = attend(carry['states'][-1][0])
  else:
    extra = carry['feed'] if c.input_feeding else None
  xp_BxG = yp_BxG
  if extra is not None:
    xp_BxG = xp_BxG + extra @ params['layers'][0]['w_in'][0, c.embed_size:]
  states = []
  for i, (layer, state) in enumerate(zip(params['layers'], carry['states'])):
    if i > 0:
      xp_BxG = states[-1][0] @ layer['w_in'][0] + layer['b_in'][0]
    new = cells.step(c.cell, layer, tuple(s[None] for s in state), xp_BxG[None])
    states.append(tuple(s[0] for s in new))
  s_BxH = states[-1][0]
  if c.style == 'luong':
    attn_BxS, ctx_BxD = attend(s_BxH)
    features_BxF = jnp.tanh(jnp.concatenate([ctx_BxD, s_BxH], -1) @ params['combine_w'] + params['combine_b'])
  else:
    features_BxF = jnp.concatenate([s_BxH, extra], -1)
  return {'states': states, 'feed': features_BxF if c.style == 'luong' else carry['feed']}, features_BxF, attn_BxS


def logits(params, features):
  return features @ params['out_w'] + params['out_b']


def teacher_forced(params, c, carry: dict, memory: dict, tgt_in_BxT, *, tf_ratio=1.0, dropout_rng=None,
                   sample_rng=None) -> tuple[jax.Array, jax.Array]:
  """Runs `step` over all target positions. Returns logits (B, T, V) and attention (B, T, S).

  With `sample_rng` (scheduled sampling), each step after the first reads the gold previous token with
  probability `tf_ratio` and otherwise a token sampled from the model's own previous prediction (the coin
  is flipped per sentence and step). Dropout (with `dropout_rng`) hits target embeddings and output features.
  """
  batch, steps = tgt_in_BxT.shape
  emb_mask_BxTxE = None
  if dropout_rng is not None and c.dropout > 0:
    emb_rng, dropout_rng = jax.random.split(dropout_rng)
    emb_mask_BxTxE = dropout(emb_rng, jnp.ones((batch, steps, c.embed_size), c.compute_dtype), c.dropout)
  yp_BxTxG = embed(params, c, tgt_in_BxT, emb_mask_BxTxE)
  xs = {'yp': jnp.moveaxis(yp_BxTxG, 1, 0)}
  if sample_rng is not None:
    coin_rng, token_rng = jax.random.split(sample_rng)
    xs['gold'] = (jax.random.uniform(coin_rng, (steps, batch)) < tf_ratio).at[0].set(True)  # step 0 reads BOS
    xs['key'] = jax.random.split(token_rng, steps)
    xs['emb_mask'] = (jnp.ones((steps, batch, c.embed_size), c.compute_dtype) if emb_mask_BxTxE is None
                      else jnp.moveaxis(emb_mask_BxTxE, 1, 0))

  def body(loop, x):
    carry, prev_features = loop
    yp_BxG = x['yp']
    if sample_rng is not None:
      sampled_B = jax.random.categorical(x['key'], logits(params, jax.lax.stop_gradient(prev_features)))
      yp_BxG = jnp.where(x['gold'][:, None], yp_BxG, embed(params, c, sampled_B, x['emb_mask']))
    carry, features_BxF, attn_BxS = step(params, c, carry, yp_BxG, memory)
    return (carry, features_BxF), (features_BxF, attn_BxS)

  features0 = jnp.zeros((batch, feature_size(c)), yp_BxTxG.dtype)
  body = jax.checkpoint(body) if c.remat else body
  _, (features_TxBxF, attn_TxBxS) = jax.lax.scan(body, (carry, features0), xs, unroll=c.scan_unroll)
  features_BxTxF = dropout(dropout_rng, jnp.moveaxis(features_TxBxF, 0, 1), c.dropout)
  return logits(params, features_BxTxF), jnp.moveaxis(attn_TxBxS, 0, 1)
