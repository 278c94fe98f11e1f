"""The attention decoder as pure functions: one step, and the teacher-forced scan over that same step.

B batch, S source positions, T target steps, E embedding size, H decoder units, D encoder output size,
G gate width of the first decoder layer, F output feature size, V target vocabulary.

Styles (one `Style` entry each in `STYLES`; `c` is the model's `ModelConfig`):
  bahdanau  c_t = attend(s_{t-1});  s_t = cell(s_{t-1}, [e(y_{t-1}); c_t]);  features [s_t; c_t]
  luong     s_t = cell(s_{t-1}, [e(y_{t-1}); h̃_{t-1}]);  c_t = attend(s_t);  h̃_t = tanh(W_c [c_t; s_t])
            (input feeding: h̃_{t-1} is fed back; without it the input is e(y_{t-1}) alone)
With attention 'none' the context is the encoder's final state at every step.
Logits are `features @ W_out + b_out`; with `tie_embeddings`, `W_out` is the transpose of the decoder's
embedding (after a projection F -> E when the features are not of the embedding's size). The carry is
{'states': per layer the cell state, 'feed': luong's h̃_{t-1}, 'attention': the attention kind's per-step state}.

With `copy` (the pointer-generator, pointer.py) each step also returns the pre-activation of p_gen, from the
context, the top layer's new state and the input embedding, and the output is log P over the extended
vocabulary (V + S) instead of logits; the memory then holds `ext` (B, S), the extended id of every source
position. An extended id fed back as input is read as UNK.
"""

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp

from seq2seq_jax.model import attention, cells, pointer
from seq2seq_jax.model.encoder import dropout


def _mm(m: int, k: int, n: int) -> int:
  return 2 * m * k * n


def _bahdanau_before(params, c, carry, attend):
  """Attends with s_{t-1}; the context is the first layer's extra input."""
  del params, c
  attn_BxS, ctx_BxD = attend(carry['states'][-1][0])
  return ctx_BxD, attn_BxS


def _bahdanau_after(params, c, carry, s_BxH, extra_BxD, attn_BxS, attend):
  del params, c, attend
  return jnp.concatenate([s_BxH, extra_BxD], -1), carry['feed'], attn_BxS


def _luong_before(params, c, carry, attend):
  """Reads the previous attentional vector (input feeding), attends later with s_t."""
  del params, attend
  return (carry['feed'] if c.input_feeding else None), None


def _luong_after(params, c, carry, s_BxH, extra, pending, attend):
  del c, carry, extra, pending
  attn_BxS, ctx_BxD = attend(s_BxH)
  features_BxF = jnp.tanh(jnp.concatenate([ctx_BxD, s_BxH], -1) @ params['combine_w'] + params['combine_b'])
  return features_BxF, features_BxF, attn_BxS


def _luong_init(rng, c) -> dict:
  h = c.decoder_size
  return {'combine_w': jax.nn.initializers.glorot_uniform()(rng, (c.memory_size + h, h)),
          'combine_b': jnp.zeros((h,))}


@dataclasses.dataclass(frozen=True)
class Style:
  """One decoder style. `extra_size(c)`: what the first layer reads beside the embedding; `feature_size(c)`:
  the output features' size; `init(rng, c)`: the style's own parameters; `before(params, c, carry, attend)
  -> (extra or None, pending)` runs before the cells, `after(params, c, carry, s, extra, pending, attend)
  -> (features, feed, attention weights)` after them, each calling `attend(query) -> (weights, context)`
  at most once between them; `flops_step(c, batch)`: its own matmul FLOPs per step; `needs_attention`:
  it cannot run with attention 'none'."""
  extra_size: Callable[..., int]
  feature_size: Callable[..., int]
  before: Callable
  after: Callable
  init: Callable[..., dict] = lambda rng, c: {}
  flops_step: Callable[..., int] = lambda c, batch: 0
  needs_attention: bool = False


STYLES: dict[str, Style] = {
    'bahdanau': Style(extra_size=lambda c: c.memory_size, feature_size=lambda c: c.decoder_size + c.memory_size,
                      before=_bahdanau_before, after=_bahdanau_after),
    'luong': Style(extra_size=lambda c: c.decoder_size if c.input_feeding else 0,
                   feature_size=lambda c: c.decoder_size, before=_luong_before, after=_luong_after,
                   init=_luong_init, needs_attention=True,
                   flops_step=lambda c, batch: _mm(batch, c.memory_size + c.decoder_size, c.decoder_size)),
}


def feature_size(c) -> int:
  return STYLES[c.style].feature_size(c)


def init(rng, c) -> dict:
  k = iter(jax.random.split(rng, 2 * c.num_layers + 6))
  glorot = jax.nn.initializers.glorot_uniform()
  h, style, kind = c.decoder_size, STYLES[c.style], attention.KINDS[c.attention]
  layers = [cells.init(next(k), c.cell, c.embed_size + style.extra_size(c) if i == 0 else h, h)
            for i in range(c.num_layers)]
  # Initial states from the encoder's final ones: h through tanh, an LSTM's c linearly.
  bridge = [{'w_h': glorot(next(k), (c.memory_size, h)), 'b_h': jnp.zeros((h,)),
             'w_c': glorot(next(k), (c.memory_size, h)), 'b_c': jnp.zeros((h,))} for _ in range(c.num_layers)]
  if cells.CELLS[c.cell].num_states == 1:
    bridge = [{'w_h': b['w_h'], 'b_h': b['b_h']} for b in bridge]
  params = {'embed': jax.random.normal(next(k), (c.tgt_vocab, c.embed_size)) * c.embed_size ** -0.5,
            'layers': layers, 'bridge': bridge,
            'attention': kind.init(next(k), h, c.memory_size, c.attention_size, **kind.settings(c))}
  out_key = next(k)
  if not c.tie_embeddings:
    params['out_w'] = glorot(out_key, (feature_size(c), c.tgt_vocab))
  elif feature_size(c) != c.embed_size:
    params['out_proj'] = glorot(out_key, (feature_size(c), c.embed_size))
  params['out_b'] = jnp.zeros((c.tgt_vocab,))
  params.update(style.init(next(k), c))
  if c.copy:  # a key of its own: the other parameters are drawn as without copy
    params['copy'] = pointer.init(jax.random.fold_in(rng, 1), c.embed_size, c.memory_size, h)
  return params


def prepare(params, c, memory_BxSxD, lengths_B, enc_finals, src_ext_BxS=None) -> tuple[dict, dict]:
  """From the encoder's outputs to the decoder's (initial carry, memory); keys are projected here, once.
  `src_ext_BxS`: the extended target id of every source position (with `copy` only)."""
  def both_directions(x_RxBxH):
    return jnp.concatenate(list(x_RxBxH), axis=-1)
  states = []
  for final, b in zip(enc_finals, params['bridge']):
    h0 = jnp.tanh(both_directions(final[0]) @ b['w_h'] + b['b_h'])
    states.append((h0,) if len(final) == 1 else (h0, both_directions(final[1]) @ b['w_c'] + b['b_c']))
  batch = memory_BxSxD.shape[0]
  kind = attention.KINDS[c.attention]
  mask_BxS = jnp.arange(memory_BxSxD.shape[1])[None, :] < lengths_B[:, None]
  carry = {'states': states, 'feed': jnp.zeros((batch, c.decoder_size), memory_BxSxD.dtype),
           'attention': kind.init_state(mask_BxS)}
  memory = {'values': memory_BxSxD, 'keys': kind.keys(params['attention'], memory_BxSxD), 'mask': mask_BxS,
            'context': both_directions(enc_finals[-1][0])}
  if c.copy:
    memory['ext'] = src_ext_BxS
  return carry, memory


TABLE_VOCAB = 1024  # decoding looks small vocabularies up in a projected (V, G) table


def embed(params, c, y, emb_mask=None, table: bool = False) -> jax.Array:
  """Embeds target ids (any leading shape) and projects them to the first layer's gates: (..., G).

  `table` (decoding): with a small vocabulary (characters, phones) the whole vocabulary is projected and `y`
  looked up in that (V, G) table; in a decoding loop the table is loop-invariant, so each step does a gather
  instead of a (B, E) x (E, G) matmul. The choice depends on V only, never on the batch.
  With `copy`, extended ids are read as UNK, and p_gen's input term w_x·e is appended: (..., G + 1).
  """
  layer = params['layers'][0]
  def project(e):
    gates = e @ layer['w_in'][0, :c.embed_size] + layer['b_in'][0]
    if c.copy:
      gates = jnp.concatenate([gates, pointer.input_term(params['copy'], e)[..., None]], -1)
    return gates
  if c.copy:
    y = pointer.decoder_input(y, c.tgt_vocab)
  if table and emb_mask is None and c.tgt_vocab <= TABLE_VOCAB:
    return project(params['embed'])[y]
  e = params['embed'][y]
  return project(e if emb_mask is None else e * emb_mask)


def _weights_and_context(kind, query_BxH, keys, values_BxSxD, mask_BxS, params, state):
  weights_BxS = kind.weights(params, query_BxH, keys, mask_BxS, state)
  return weights_BxS, attention.context(weights_BxS, values_BxSxD)


def _step_and_context(kind, hard, settings, query_BxH, keys, values_BxSxD, mask_BxS, params, state, noise_BxS):
  weights_BxS, state = kind.step(params, query_BxH, keys, mask_BxS, state, hard=hard, noise_BxS=noise_BxS,
                                 **settings)
  return weights_BxS, attention.context(weights_BxS, values_BxSxD), state


def step(params, c, carry: dict, yp_BxG, memory: dict, *, hard: bool = False,
         noise_BxS=None) -> tuple[dict, jax.Array, jax.Array, jax.Array | None]:
  """One decoder step from the embedded previous token. Returns (carry, features (B, F), attention (B, S),
  p_gen's pre-activation (B,) with `copy`, else None).

  `hard`: the decoders' rule of kinds that decode by another rule than they train (monotonic, mocha); False in
  the teacher-forced scan. `noise_BxS`: training noise for the kinds that take it (None: none)."""
  kind, style = attention.KINDS[c.attention], STYLES[c.style]
  stepped = {}  # set by `attend`: the context, and the next attention state of a kind with its own `step`

  def attend(query_BxH):
    if not kind.attends:
      return jnp.zeros(memory['mask'].shape, query_BxH.dtype), memory['context']
    # Recomputed in the backward pass: storing its (B, S, A) activations for every step costs more than that.
    if kind.step is not None:
      scorer = jax.checkpoint(functools.partial(_step_and_context, kind, hard, kind.settings(c)))
      weights_BxS, stepped['context'], stepped['state'] = scorer(
          query_BxH, memory['keys'], memory['values'], memory['mask'], params['attention'], carry['attention'],
          noise_BxS)
      return weights_BxS, stepped['context']
    scorer = jax.checkpoint(lambda *args: _weights_and_context(kind, *args))
    weights_BxS, stepped['context'] = scorer(query_BxH, memory['keys'], memory['values'], memory['mask'],
                                             params['attention'], carry['attention'])
    return weights_BxS, stepped['context']

  x_term_B = None
  if c.copy:  # embed() appended p_gen's input term
    yp_BxG, x_term_B = yp_BxG[:, :-1], yp_BxG[:, -1]
  extra, pending = style.before(params, c, carry, attend)
  xp_BxG = yp_BxG
  if extra is not None:
    xp_BxG = xp_BxG + extra @ params['layers'][0]['w_in'][0, c.embed_size:]
  states = []
  for i, (layer, state) in enumerate(zip(params['layers'], carry['states'])):
    if i > 0:
      xp_BxG = states[-1][0] @ layer['w_in'][0] + layer['b_in'][0]
    new = cells.step(c.cell, layer, tuple(s[None] for s in state), xp_BxG[None])
    states.append(tuple(s[0] for s in new))
  features_BxF, feed_BxH, attn_BxS = style.after(params, c, carry, states[-1][0], extra, pending, attend)
  attention_state = stepped['state'] if 'state' in stepped else kind.update_state(carry['attention'], attn_BxS)
  carry = {'states': states, 'feed': feed_BxH, 'attention': attention_state}
  gate_B = pointer.gate(params['copy'], stepped['context'], states[-1][0], x_term_B) if c.copy else None
  return carry, features_BxF, attn_BxS, gate_B


def logits(params, c, features):
  """Vocabulary logits of output features (any leading shape)."""
  if not c.tie_embeddings:
    return features @ params['out_w'] + params['out_b']
  if 'out_proj' in params:
    features = features @ params['out_proj']
  return features @ params['embed'].T + params['out_b']


def outputs(params, c, features, attn=None, gate=None, *, memory: dict):
  """What the decoder emits for features (and, with `copy`, attention and p_gen's pre-activation) of one step
  (B, ...) or of all steps (B, T, ...): logits over V, or with `copy` log P over the extended vocabulary."""
  out = logits(params, c, features)
  if not c.copy:
    return out
  if out.ndim == 2:
    return pointer.mix_step(out, attn, gate, memory['ext'])
  return pointer.mix(out, attn, gate, memory['ext'])


def teacher_forced(params, c, carry: dict, memory: dict, tgt_in_BxT, *, tf_ratio=1.0, dropout_rng=None,
                   sample_rng=None, noise_rng=None, with_gate: bool = False) -> tuple:
  """Runs `step` over all target positions. Returns logits (B, T, V) (with `copy`: log P (B, T, V + S)) and
  attention (B, T, S); `with_gate`: also p_gen's pre-activation (B, T) (None without `copy`).

  With `sample_rng` (scheduled sampling), each step after the first reads the gold previous token with
  probability `tf_ratio` and otherwise a token sampled from the model's own previous output (the coin
  is flipped per sentence and step). Dropout (with `dropout_rng`) hits target embeddings and output features.
  With `noise_rng`, a kind that takes training noise (`Kind.noisy`) gets N(0, model.monotonic_noise²) per
  sentence, step and source position. Attention runs soft (`hard=False`) here.
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
  if noise_rng is not None:
    xs['noise'] = c.monotonic_noise * jax.random.normal(noise_rng, (steps,) + memory['mask'].shape)

  def body(loop, x):
    carry, prev = loop  # the previous step's (features[, attention, gate]): what scheduled sampling draws from
    yp_BxG = x['yp']
    if sample_rng is not None:
      scores_BxX = outputs(params, c, *jax.lax.stop_gradient(prev), memory=memory)
      sampled_B = jax.random.categorical(x['key'], scores_BxX)
      yp_BxG = jnp.where(x['gold'][:, None], yp_BxG, embed(params, c, sampled_B, x['emb_mask']))
    carry, features_BxF, attn_BxS, gate_B = step(params, c, carry, yp_BxG, memory, noise_BxS=x.get('noise'))
    prev = (features_BxF, attn_BxS, gate_B) if c.copy else (features_BxF,)
    return (carry, prev), (features_BxF, attn_BxS, gate_B)

  prev0 = (jnp.zeros((batch, feature_size(c)), yp_BxTxG.dtype),)
  if c.copy:
    prev0 += (jnp.zeros(memory['mask'].shape, yp_BxTxG.dtype), jnp.zeros((batch,), yp_BxTxG.dtype))
  body = jax.checkpoint(body) if c.remat else body
  _, (features_TxBxF, attn_TxBxS, gate_TxB) = jax.lax.scan(body, (carry, prev0), xs, unroll=c.scan_unroll)
  features_BxTxF = dropout(dropout_rng, jnp.moveaxis(features_TxBxF, 0, 1), c.dropout)
  attn_BxTxS = jnp.moveaxis(attn_TxBxS, 0, 1)
  gate_BxT = None if gate_TxB is None else gate_TxB.T
  out = outputs(params, c, features_BxTxF, attn_BxTxS, gate_BxT, memory=memory)
  return (out, attn_BxTxS, gate_BxT) if with_gate else (out, attn_BxTxS)
