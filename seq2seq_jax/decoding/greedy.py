"""Greedy decoding (and the loop that sampling shares) in a `lax.while_loop` over a pure `step` function.

`run` is the loop; a `choose(logp_BxV, t)` function picks each step's tokens from the log-probabilities that
the decoding controls leave (`controls.constrain`: minimum length, n-gram blocking, forced prefix, length limit):
`greedy` takes the argmax, `sampling.sample` draws from the (tempered, top-k, top-p) distribution. Beam search
(`beam.py`) has its own loop over the same `step`, the same controls and the same length rule. `encode` and
`step` are the functions of `fns.py`.

B batch, S padded source length, L output buffer length, V target vocabulary, P prefix length.
The loop stops as soon as every sentence has emitted EOS, or at its maximum length
`min(cap, floor(a * n + b))` (n: the sentence's own source length without EOS), where EOS is forced. Each
sentence's result depends only on its own source (and prefix): not on the batch, its order or its padding.
"""

import dataclasses
from typing import Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np

from seq2seq_jax.data.vocab import BOS, EOS, PAD
from seq2seq_jax.decoding import controls as controls_lib
from seq2seq_jax.decoding.controls import Controls


@dataclasses.dataclass(frozen=True)
class LengthRule:
  """Output limit per sentence: min(cap, floor(a * n + b)) tokens before EOS, n its source length."""
  a: float
  b: int
  cap: int

  def limits(self, src_len_B):
    """Per-sentence output limits (EOS not counted)."""
    return jnp.minimum(self.cap, jnp.floor(self.a * (src_len_B - 1) + self.b)).astype(jnp.int32)

  def buffer(self, src_len: int) -> int:
    """Static output buffer for a padded source length: the largest limit plus room for EOS."""
    return int(min(self.cap, np.floor(self.a * (src_len - 1) + self.b))) + 1


@flax.struct.dataclass
class LoopState:
  t: jax.Array           # () step
  y: jax.Array           # (B,) previous tokens
  carry: object          # the model's carry
  tokens: jax.Array      # (B, L) PAD after EOS
  attn: jax.Array        # (B, L, S)
  done: jax.Array        # (B,) EOS emitted
  lengths: jax.Array     # (B,) without EOS
  scores: jax.Array      # (B,) sum of log-probs of the chosen tokens, EOS included
  history: jax.Array     # (B, L) the tokens so far, for the controls that read them ((B, 0) otherwise)


def no_prefix(batch: int):
  """The prefix array of sentences without forced prefixes: (B, 0)."""
  return jnp.zeros((batch, 0), jnp.int32)


def run(encode: Callable, step: Callable, src_BxS, src_len_B, choose: Callable, rule: LengthRule,
        controls: Controls = Controls(), prefix_BxP=None) -> dict:
  """Decodes with `choose(logp_BxV, t) -> y_B` (log-probs with PAD/BOS and whatever the controls forbid at
  -inf; at the limit only EOS is left). `prefix_BxP`: each sentence's forced first tokens, PAD after them.

  Returns tokens (B, L) (PAD after EOS), lengths (B,) (without EOS), attention (B, L, S), scores (B,) (sum of
  the model's log-probabilities of the chosen tokens, EOS included).
  """
  batch, src_steps = src_BxS.shape
  steps = rule.buffer(src_steps)
  limit_B = rule.limits(src_len_B)
  prefix_BxP = no_prefix(batch) if prefix_BxP is None else prefix_BxP
  carry, memory = encode(src_BxS, src_len_B)
  state = LoopState(t=jnp.int32(0), y=jnp.full((batch,), BOS, jnp.int32), carry=carry,
                    tokens=jnp.full((batch, steps), PAD, jnp.int32), attn=jnp.zeros((batch, steps, src_steps)),
                    done=jnp.zeros((batch,), bool), lengths=jnp.zeros((batch,), jnp.int32),
                    scores=jnp.zeros((batch,)), history=controls.history(batch, steps))

  def cond(st: LoopState):
    return (st.t < steps) & ~st.done.all()

  def body(st: LoopState) -> LoopState:
    t, done = st.t, st.done
    carry, logp_BxV, attn_BxS = step(st.carry, st.y, memory)
    allowed_BxV = controls_lib.constrain(controls, logp_BxV, controls_lib.At(t, st.history, prefix_BxP, limit_B))
    y_B = choose(allowed_BxV, t).astype(jnp.int32)
    chosen_B = jnp.take_along_axis(logp_BxV, y_B[:, None], axis=-1)[:, 0]
    y_B = jnp.where(done, PAD, y_B)
    return LoopState(t=t + 1, y=y_B, carry=carry, tokens=st.tokens.at[:, t].set(y_B),
                     attn=st.attn.at[:, t].set(jnp.where(done[:, None], 0.0, attn_BxS)),
                     done=done | (y_B == EOS), lengths=jnp.where(~done & (y_B == EOS), t, st.lengths),
                     scores=st.scores + jnp.where(done, 0.0, chosen_B),
                     history=controls_lib.record(st.history, y_B, t))

  out = jax.lax.while_loop(cond, body, state)
  return {'tokens': out.tokens, 'lengths': out.lengths, 'attn': out.attn, 'scores': out.scores}


def greedy(encode: Callable, step: Callable, src_BxS, src_len_B, rule: LengthRule,
           controls: Controls = Controls(), prefix_BxP=None) -> dict:
  """The most likely allowed token at each step; outputs as `run`'s."""
  return run(encode, step, src_BxS, src_len_B, lambda logp_BxV, t: logp_BxV.argmax(-1), rule, controls,
             prefix_BxP)


@dataclasses.dataclass(frozen=True)
class Greedy:
  """Greedy decoding as a search (see search.py): one hypothesis per source."""
  rule: LengthRule
  controls: Controls = Controls()

  def __call__(self, encode, step, src_BxS, src_len_B, keys_B=None, prefix_BxP=None) -> dict:
    del keys_B
    out = greedy(encode, step, src_BxS, src_len_B, self.rule, self.controls, prefix_BxP)
    return {k: v[:, None] for k, v in out.items()}
