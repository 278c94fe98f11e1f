"""Inference: one-token-per-step decoding in a jit-compiled `lax.while_loop` over the model's own `decode_step`.

`run` is the loop; a `choose(logits_BxV, t)` function picks each step's tokens: `greedy` takes the argmax,
`sampling.sample` draws from the (tempered, top-k) distribution. Beam search (`beam.py`) has its own loop over
the same `decode_step` and the same length rule.

B batch, S padded source length, L output buffer length, V target vocabulary.
The loop stops as soon as every sentence has emitted EOS, or at its maximum length
`min(cap, floor(a * n + b))` (n: the sentence's own source length without EOS), where EOS is forced. Each
sentence's result depends only on its own source: not on the batch, its order or its padding.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from seq2seq_jax.vocab import BOS, EOS, PAD


def allowed_logits(logits_BxV):
  """Decoders never emit PAD or BOS."""
  return logits_BxV.at[:, jnp.array([PAD, BOS])].set(-jnp.inf)


def max_lengths(src_len_B, a: float, b: int, cap: int):
  """Per-sentence output limits (EOS not counted)."""
  return jnp.minimum(cap, jnp.floor(a * (src_len_B - 1) + b)).astype(jnp.int32)


def buffer_len(src_len: int, a: float, b: int, cap: int) -> int:
  """Static output buffer for a padded source length: the largest limit plus room for EOS."""
  return int(min(cap, np.floor(a * (src_len - 1) + b))) + 1


def run(model, params, src_BxS, src_len_B, choose: Callable, *, a: float, b: int, cap: int) -> dict:
  """Decodes with `choose(logits_BxV, t) -> y_B` (logits with PAD/BOS at -inf; EOS is forced at the limit).

  Returns tokens (B, L) (PAD after EOS), lengths (B,) (without EOS), attention (B, L, S), scores (B,) (sum of
  the model's log-probabilities of the chosen tokens, EOS included).
  """
  variables = {'params': params}
  batch, src_steps = src_BxS.shape
  steps = buffer_len(src_steps, a, b, cap)
  limit_B = max_lengths(src_len_B, a, b, cap)
  carry, memory = model.apply(variables, src_BxS, src_len_B, method='encode')
  state = {'t': jnp.int32(0), 'y': jnp.full((batch,), BOS, jnp.int32), 'carry': carry,
           'tokens': jnp.full((batch, steps), PAD, jnp.int32), 'attn': jnp.zeros((batch, steps, src_steps)),
           'done': jnp.zeros((batch,), bool), 'lengths': jnp.zeros((batch,), jnp.int32),
           'scores': jnp.zeros((batch,))}

  def cond(st):
    return (st['t'] < steps) & ~st['done'].all()

  def body(st):
    t, done = st['t'], st['done']
    carry, logits_BxV, attn_BxS = model.apply(variables, st['carry'], st['y'], memory, method='decode_step')
    logits_BxV = allowed_logits(logits_BxV)
    y_B = jnp.where(t >= limit_B, EOS, choose(logits_BxV, t).astype(jnp.int32))
    logp_B = jnp.take_along_axis(jax.nn.log_softmax(logits_BxV), y_B[:, None], axis=-1)[:, 0]
    y_B = jnp.where(done, PAD, y_B)
    return {'t': t + 1, 'y': y_B, 'carry': carry,
            'tokens': st['tokens'].at[:, t].set(y_B),
            'attn': st['attn'].at[:, t].set(jnp.where(done[:, None], 0.0, attn_BxS)),
            'done': done | (y_B == EOS),
            'lengths': jnp.where(~done & (y_B == EOS), t, st['lengths']),
            'scores': st['scores'] + jnp.where(done, 0.0, logp_B)}

  out = jax.lax.while_loop(cond, body, state)
  return {k: out[k] for k in ('tokens', 'lengths', 'attn', 'scores')}


def greedy(model, params, src_BxS, src_len_B, *, a: float, b: int, cap: int) -> dict:
  """The most likely token at each step; outputs as `run`'s."""
  return run(model, params, src_BxS, src_len_B, lambda logits_BxV, t: logits_BxV.argmax(-1), a=a, b=b, cap=cap)


@functools.lru_cache(maxsize=None)
def jitted_greedy(model, a: float, b: int, cap: int):
  """A compiled `greedy` for one model and length rule (recompiles per input shape only)."""
  return jax.jit(functools.partial(greedy, model, a=a, b=b, cap=cap))
