"""Decoding controls: what each step of greedy, sampling and beam search may emit, as transforms of its
log-probabilities, all applied in one place (`constrain`) inside the compiled loops.

R rows (sentences, or sentences x beams), V target vocabulary, L output buffer length, P prefix length.

Each entry of `CONSTRAINTS` is a pure function `(controls, logp_RxV, model_logp_RxV, at) -> logp_RxV` that sets
the tokens a row may not emit to -inf and leaves the others at the model's own log-probability (so scores stay
the model's log-probabilities of the chosen tokens, and beam search's ranking is unchanged among allowed
tokens). They run in order and a later one wins over an earlier one:

  min_length      EOS is not allowed before `min_len` output tokens (the prefix counts)
  no_repeat_ngram no n-gram of size `no_repeat_ngram` occurs twice in a row's output (the prefix counts)
  dead_end        a row that the two above left with no token at all may end (EOS allowed): never a stuck row
  forced_prefix   while t < the row's prefix length, only the prefix's token t is allowed
  length_limit    at the row's length limit only EOS is allowed (always on; see greedy.LengthRule)

A control that is off adds nothing to the compiled program (it is decided from static settings and shapes), so
with every control off the results are bit-identical to decoding without them. Each control reads only its own
row (its history, prefix and limit), so results stay independent of the batch, its order and its padding.
Sampling's own transforms of the distribution it draws from (temperature, top-k, top-p) are in sampling.py.
Adding a control: a setting in `Controls`, a function here, one entry in `CONSTRAINTS`; to expose it, a field of
`search.DecodeOptions`, a flag (cli.py) and a `decode.*` config key, all of the same name.
"""

import dataclasses

import flax
import jax
import jax.numpy as jnp

from seq2seq_jax.data.vocab import EOS, PAD


@dataclasses.dataclass(frozen=True)
class Controls:
  """The static settings of the controls (0: off); the prefix is data (`At.prefix`), not a setting."""
  min_len: int = 0          # output tokens (EOS excluded) before EOS is allowed
  no_repeat_ngram: int = 0  # n: no n-gram repeated within an output

  @property
  def needs_history(self) -> bool:
    return self.no_repeat_ngram > 0

  def history(self, rows: int, steps: int) -> jax.Array:
    """The empty token history of `rows` rows: (rows, steps), or (rows, 0) when no control reads it."""
    return jnp.full((rows, steps if self.needs_history else 0), PAD, jnp.int32)


def record(history_RxL, y_R, t):
  """The history with step t's tokens written (unchanged when no control keeps one)."""
  return history_RxL.at[:, t].set(y_R) if history_RxL.shape[1] else history_RxL


@flax.struct.dataclass
class At:
  """What the controls see of one step: the step t, each row's tokens before t (`history`, (R, L) or (R, 0)),
  its forced prefix (`prefix`, (R, P), PAD after its end; P = 0: none) and its length limit (R,)."""
  t: jax.Array
  history: jax.Array
  prefix: jax.Array
  limit: jax.Array


def _min_length(c: Controls, logp_RxV, model_logp_RxV, at: At):
  if not c.min_len:
    return logp_RxV
  return logp_RxV.at[:, EOS].set(jnp.where(at.t < c.min_len, -jnp.inf, logp_RxV[:, EOS]))


def banned_ngram_tokens(history_RxL, t, n: int, vocab: int):
  """(R, V) True for each token w such that (the last n - 1 tokens before t, w) is an n-gram that already
  occurs in the row's tokens before t."""
  rows, steps = history_RxL.shape
  padded_RxLn = jnp.pad(history_RxL, ((0, 0), (0, n)), constant_values=PAD)
  suffix_RxN = jax.lax.dynamic_slice_in_dim(padded_RxLn, t - (n - 1), n - 1, axis=1)  # (R, n - 1)
  # An n-gram starting at j is complete before t if j + n - 1 <= t - 1; it matches if its first n - 1
  # tokens are the suffix, and then its last token is banned. (For t < n - 1 no j qualifies.)
  match_RxL = jnp.broadcast_to(jnp.arange(steps)[None, :] <= t - n, (rows, steps))
  for i in range(n - 1):
    match_RxL = match_RxL & (padded_RxLn[:, i:i + steps] == suffix_RxN[:, i:i + 1])
  next_RxL = padded_RxLn[:, n - 1:n - 1 + steps]
  hits_RxV = jnp.zeros((rows, vocab), jnp.int32).at[jnp.arange(rows)[:, None], next_RxL].add(
      match_RxL.astype(jnp.int32))
  return hits_RxV > 0


def _no_repeat_ngram(c: Controls, logp_RxV, model_logp_RxV, at: At):
  if not c.no_repeat_ngram:
    return logp_RxV
  banned_RxV = banned_ngram_tokens(at.history, at.t, c.no_repeat_ngram, logp_RxV.shape[-1])
  return jnp.where(banned_RxV, -jnp.inf, logp_RxV)


def _finite(logp):
  """A token that must be chosen even where the model gives it probability 0 gets the lowest finite log-prob, so
  that every decoder picks it (an argmax over nothing but -inf would pick PAD)."""
  return jnp.maximum(logp, jnp.finfo(logp.dtype).min)


def _dead_end(c: Controls, logp_RxV, model_logp_RxV, at: At):
  if not (c.min_len or c.no_repeat_ngram):  # only these take every token away
    return logp_RxV
  stuck_R = ~jnp.isfinite(logp_RxV).any(-1)
  return logp_RxV.at[:, EOS].set(jnp.where(stuck_R, _finite(model_logp_RxV[:, EOS]), logp_RxV[:, EOS]))


def _only(token_R, where_R, logp_RxV, model_logp_RxV):
  """Rows where `where_R`: every token -inf but `token_R`, at its model log-probability."""
  is_token_RxV = jnp.arange(logp_RxV.shape[-1])[None, :] == token_R[:, None]
  return jnp.where(where_R[:, None], jnp.where(is_token_RxV, _finite(model_logp_RxV), -jnp.inf), logp_RxV)


def _forced_prefix(c: Controls, logp_RxV, model_logp_RxV, at: At):
  width = at.prefix.shape[1]
  if not width:
    return logp_RxV
  token_R = jax.lax.dynamic_index_in_dim(at.prefix, jnp.minimum(at.t, width - 1), axis=1, keepdims=False)
  return _only(token_R, (at.t < width) & (token_R != PAD), logp_RxV, model_logp_RxV)


def _length_limit(c: Controls, logp_RxV, model_logp_RxV, at: At):
  return _only(jnp.full(at.limit.shape, EOS), at.t >= at.limit, logp_RxV, model_logp_RxV)


CONSTRAINTS = (_min_length, _no_repeat_ngram, _dead_end, _forced_prefix, _length_limit)


def constrain(c: Controls, model_logp_RxV, at: At):
  """The step's log-probabilities with every control applied (see the module docstring)."""
  logp_RxV = model_logp_RxV
  for control in CONSTRAINTS:
    logp_RxV = control(c, logp_RxV, model_logp_RxV, at)
  return logp_RxV
