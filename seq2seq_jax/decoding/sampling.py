"""Ancestral sampling with temperature and top-k, in the same loop as greedy decoding (`greedy.run`).

B batch, V target vocabulary. Every sentence has its own PRNG key, folded with the step number at each step,
so a sentence's sample depends on its key and its source only (not on the batch, its order or its padding):
the same keys give the same output. The score is the model's own log-probability of the sample (untempered).
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from seq2seq_jax.decoding.greedy import LengthRule, run


def restrict(logp_BxV, temperature: float = 1.0, top_k: int | None = None):
  """Logits to sample from: divided by `temperature`, all but the `top_k` largest set to -inf."""
  if top_k is not None and top_k < logp_BxV.shape[-1]:
    # (the barrier keeps XLA from folding the slice into the top-k, which would make it a full sort on CPU)
    kth_Bx1 = jax.lax.optimization_barrier(jax.lax.top_k(logp_BxV, top_k)[0])[:, -1:]
    logp_BxV = jnp.where(logp_BxV < kth_Bx1, -jnp.inf, logp_BxV)
  return logp_BxV / temperature


def sentence_keys(seed: int, ids_B) -> jax.Array:
  """One key per sentence: the seed's key folded with an id of the sentence (e.g. its index in the input)."""
  return jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(seed), jnp.asarray(ids_B, jnp.uint32))


def sample(encode: Callable, step: Callable, src_BxS, src_len_B, keys_B, rule: LengthRule, *,
           temperature: float = 1.0, top_k: int | None = None) -> dict:
  """Samples one output per sentence with its key (`keys_B`: (B, 2)); outputs as `greedy.run`'s."""
  def choose(logp_BxV, t):
    step_keys_B = jax.vmap(jax.random.fold_in, (0, None))(keys_B, t)
    return jax.vmap(jax.random.categorical)(step_keys_B, restrict(logp_BxV, temperature, top_k))
  return run(encode, step, src_BxS, src_len_B, choose, rule)


@dataclasses.dataclass(frozen=True)
class Sample:
  """Sampling as a search (see search.py): one sample per source, drawn with that source's key."""
  rule: LengthRule
  temperature: float = 1.0
  top_k: int | None = None

  def __call__(self, encode, step, src_BxS, src_len_B, keys_B) -> dict:
    out = sample(encode, step, src_BxS, src_len_B, keys_B, self.rule, temperature=self.temperature,
                 top_k=self.top_k)
    return {k: v[:, None] for k, v in out.items()}
