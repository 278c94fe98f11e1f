"""Ancestral sampling with temperature and top-k, in the same loop as greedy decoding (`decoding.run`).

B batch, V target vocabulary. Every sentence has its own PRNG key, folded with the step number at each step,
so a sentence's sample depends on its key and its source only (not on the batch, its order or its padding):
the same keys give the same output. The score is the model's own log-probability of the sample (untempered).
"""

import functools

import jax
import jax.numpy as jnp

from seq2seq_jax import decoding


def restrict(logits_BxV, temperature: float = 1.0, top_k: int | None = None):
  """Logits to sample from: divided by `temperature`, all but the `top_k` largest set to -inf."""
  if top_k is not None and top_k < logits_BxV.shape[-1]:
    # (the barrier keeps XLA from folding the slice into the top-k, which would make it a full sort on CPU)
    kth_Bx1 = jax.lax.optimization_barrier(jax.lax.top_k(logits_BxV, top_k)[0])[:, -1:]
    logits_BxV = jnp.where(logits_BxV < kth_Bx1, -jnp.inf, logits_BxV)
  return logits_BxV / temperature


def sentence_keys(seed: int, ids_B) -> jax.Array:
  """One key per sentence: the seed's key folded with an id of the sentence (e.g. its index in the input)."""
  return jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(seed), jnp.asarray(ids_B, jnp.uint32))


def sample(model, params, src_BxS, src_len_B, keys_B, *, temperature: float = 1.0, top_k: int | None = None,
           a: float, b: int, cap: int) -> dict:
  """Samples one output per sentence with its key (`keys_B`: (B, 2)); outputs as `decoding.run`'s."""
  def choose(logits_BxV, t):
    step_keys_B = jax.vmap(jax.random.fold_in, (0, None))(keys_B, t)
    return jax.vmap(jax.random.categorical)(step_keys_B, restrict(logits_BxV, temperature, top_k))
  return decoding.run(model, params, src_BxS, src_len_B, choose, a=a, b=b, cap=cap)


@functools.lru_cache(maxsize=None)
def jitted_sample(model, temperature: float, top_k: int | None, a: float, b: int, cap: int):
  """A compiled `sample(params, src_BxS, src_len_B, keys_B)` for one model and setting."""
  return jax.jit(functools.partial(sample, model, temperature=temperature, top_k=top_k, a=a, b=b, cap=cap))
