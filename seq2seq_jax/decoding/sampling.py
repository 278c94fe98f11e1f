"""Ancestral sampling with temperature, top-k and top-p (nucleus), in the same loop as greedy decoding
(`greedy.run`), so the decoding controls (controls.py) apply to it as to every decoder.

B batch, V target vocabulary. Every sentence has its own PRNG key, folded with the step number at each step,
so a sentence's sample depends on its key and its source only (not on the batch, its order or its padding):
the same keys give the same output. The score is the model's own log-probability of the sample (untempered).

The distribution drawn from (`restrict`): the allowed log-probabilities divided by the temperature, all but the
top-k set to -inf, then all outside the nucleus: the smallest set of most likely tokens whose probability (under
the tempered, top-k distribution, renormalised) reaches top_p (Holtzman et al., 2020). The most likely token is
always kept, and tokens tied with the least likely kept one are kept too. top_p = 1 is no nucleus at all.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from seq2seq_jax.decoding.controls import Controls
from seq2seq_jax.decoding.greedy import LengthRule, run


def nucleus(logits_BxV, top_p: float):
  """`logits_BxV` with every token outside the top-p nucleus of softmax(logits) set to -inf."""
  sorted_BxV = -jnp.sort(-logits_BxV, axis=-1)
  probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
  before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV  # the mass of the more likely tokens
  lowest_Bx1 = jnp.min(jnp.where(before_BxV < top_p, sorted_BxV, jnp.inf), axis=-1, keepdims=True)
  return jnp.where(logits_BxV < lowest_Bx1, -jnp.inf, logits_BxV)


def restrict(logp_BxV, temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0):
  """Logits to sample from: divided by `temperature`, all but the `top_k` largest set to -inf, then all but
  the top-p nucleus (top_p = 1: no nucleus)."""
  if top_k is not None and top_k < logp_BxV.shape[-1]:
    # (the barrier keeps XLA from folding the slice into the top-k, which would make it a full sort on CPU)
    kth_Bx1 = jax.lax.optimization_barrier(jax.lax.top_k(logp_BxV, top_k)[0])[:, -1:]
    logp_BxV = jnp.where(logp_BxV < kth_Bx1, -jnp.inf, logp_BxV)
  logits_BxV = logp_BxV / temperature
  return logits_BxV if top_p >= 1 else nucleus(logits_BxV, top_p)


def sentence_keys(seed: int, ids_B) -> jax.Array:
  """One key per sentence: the seed's key folded with an id of the sentence (e.g. its index in the input)."""
  return jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(seed), jnp.asarray(ids_B, jnp.uint32))


def sample(encode: Callable, step: Callable, src_BxS, src_len_B, keys_B, rule: LengthRule, *,
           temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0,
           controls: Controls = Controls(), prefix_BxP=None) -> dict:
  """Samples one output per sentence with its key (`keys_B`: (B, 2)); outputs as `greedy.run`'s."""
  def choose(logp_BxV, t):
    step_keys_B = jax.vmap(jax.random.fold_in, (0, None))(keys_B, t)
    return jax.vmap(jax.random.categorical)(step_keys_B, restrict(logp_BxV, temperature, top_k, top_p))
  return run(encode, step, src_BxS, src_len_B, choose, rule, controls, prefix_BxP)


@dataclasses.dataclass(frozen=True)
class Sample:
  """Sampling as a search (see search.py): one sample per source, drawn with that source's key."""
  rule: LengthRule
  temperature: float = 1.0
  top_k: int | None = None
  top_p: float = 1.0
  controls: Controls = Controls()

  def __call__(self, encode, step, src_BxS, src_len_B, keys_B, prefix_BxP=None) -> dict:
    out = sample(encode, step, src_BxS, src_len_B, keys_B, self.rule, temperature=self.temperature,
                 top_k=self.top_k, top_p=self.top_p, controls=self.controls, prefix_BxP=prefix_BxP)
    return {k: v[:, None] for k, v in out.items()}
