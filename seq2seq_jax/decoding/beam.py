"""Beam search in a `lax.while_loop` over a pure `step` function (see fns.py), with n-best output.

B batch, K beam size, N n-best (N <= K), M = 2K candidates, L output buffer length, S padded source length,
V target vocabulary. The encoder's carry and memory are tiled to B*K rows (row b*K + k: beam k of sentence b); the carry, with
any attention state in it, is reordered with the beams at every step.

Each step extends the K live hypotheses of a sentence by every token (K*V candidates, flattened per sentence)
and keeps the 2K best raw log-probabilities. An EOS candidate among the K best of them finishes: it goes to
the sentence's buffer (`Finished`) of the N best finished hypotheses, ranked by the GNMT-normalised score
logp / lp(len), lp(len) = ((5 + len) / 6) ** alpha, len counting the output tokens including EOS. The K best
non-EOS candidates stay live. At the first step only beam 0 is live (the others are -inf), so the K beams
start distinct. The length limit and EOS forcing are greedy's (`greedy.LengthRule`); PAD and BOS are never
emitted. The decoding controls (controls.py: minimum length, n-gram blocking, forced prefix, length limit)
constrain each live hypothesis's next token as they do greedy's: the token history they read is each
hypothesis's own, reordered with the beams. With K = 1 and alpha = 0 the result is exactly greedy's under the
same controls (tokens, and the score as log-prob sum).

Coverage penalty (GNMT, Wu et al., 2016), with `coverage_penalty` β > 0: a finished hypothesis's score is
  logp / lp(len) + cp,   cp = β Σ_j log(min(Σ_t α_{t,j}, 1))
over the real source positions j, the sum over all its output steps t (EOS included); each live hypothesis
carries its running attention sum, reordered with the beams. The sum is floored at COVERAGE_FLOOR before the
log, so that a position no step attended to (hard monotonic attention leaves most at exactly 0) costs
β log(COVERAGE_FLOOR) instead of -inf. Live hypotheses are still ranked by raw log-prob.

Stopping criterion: a live hypothesis's raw log-prob can only decrease (each token adds a log-prob <= 0) and
its final length lies between t + 2 and limit + 1 (EOS included), so its final score is at most
  bound = best live logp / max(lp(t + 2), lp(limit + 1))
(lp is monotone in len, so its largest value is at one end: at limit + 1 for alpha >= 0). A sentence is done
when bound <= the score of its N-th kept finished hypothesis (-inf while fewer than N are kept): no live
hypothesis can then enter the buffer (on ties the kept one wins), so stopping early never changes the result;
`early_stop=False` runs every sentence to its limit instead, to check that. The coverage penalty is ≤ 0, so the
bound holds with it too. The loop ends when every sentence
is done. Results depend only on each sentence's own source: not on the batch, its order or its padding.
"""

import dataclasses
from typing import Callable

import flax
import jax
import jax.numpy as jnp

from seq2seq_jax.data.vocab import BOS, EOS, PAD
from seq2seq_jax.decoding import controls as controls_lib
from seq2seq_jax.decoding.controls import Controls
from seq2seq_jax.decoding.greedy import LengthRule, no_prefix


def length_penalty(length, alpha: float):
  """GNMT's lp(len) = ((5 + len) / 6) ** alpha (len: output tokens including EOS)."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def normalise(logp, length, alpha: float):
  """The ranking score of finished hypotheses: log-prob / lp(len)."""
  return logp / length_penalty(length, alpha)


COVERAGE_FLOOR = 1e-6


def coverage_penalty_of(coverage_BxS, mask_BxS, beta: float):
  """GNMT's cp = β Σ_j log(min(coverage_j, 1)) over real positions (coverage floored at COVERAGE_FLOOR)."""
  logs_BxS = jnp.log(jnp.clip(coverage_BxS, COVERAGE_FLOOR, 1.0))
  return beta * jnp.where(mask_BxS, logs_BxS, 0.0).sum(-1)


@flax.struct.dataclass
class Finished:
  """The N best finished hypotheses of each sentence, best first (B, N); -inf scores in unfilled slots."""
  score: jax.Array  # normalised score
  logp: jax.Array   # raw log-prob sum, EOS included
  end: jax.Array    # the step at which EOS was emitted (= output length without EOS)
  slot: jax.Array   # the live beam it extended at that step
  attn: jax.Array   # (B, N, S) its attention at the EOS step


@flax.struct.dataclass
class BeamState:
  t: jax.Array          # () step
  y: jax.Array          # (B*K,) previous tokens of the live hypotheses
  carry: object         # the model's carry, (B*K, ...) leaves
  logp: jax.Array       # (B, K) raw log-prob of each live hypothesis
  tokens: jax.Array     # (B, L, K) token chosen by each live hypothesis at each step
  parents: jax.Array    # (B, L, K) the live beam each one extended (back-pointers)
  attn: jax.Array       # (B, L, K, S)
  coverage: jax.Array   # (B*K, S) attention summed over each live hypothesis's steps ((B*K, 0) without penalty)
  history: jax.Array    # (B*K, L) each live hypothesis's tokens, for the controls that read them ((B*K, 0) else)
  done: jax.Array       # (B,) no live hypothesis can still enter the finished buffer
  fin: Finished


def _gather(x_BxKx, idx_BxN):
  """x[b, idx[b, n], ...] for every b, n."""
  return jnp.take_along_axis(x_BxKx, idx_BxN.reshape(idx_BxN.shape + (1,) * (x_BxKx.ndim - 2)), axis=1)


def _backtrack(st: BeamState, steps: int) -> tuple[jax.Array, jax.Array]:
  """Tokens (B, N, L) and attention (B, N, L, S) of the kept finished hypotheses, from the back-pointers."""
  fin = st.fin

  def back(slot_BxN, s):
    before_BxN, at_end_BxN = s < fin.end, s == fin.end
    tok_BxN = jnp.where(at_end_BxN, EOS, jnp.where(before_BxN, _gather(st.tokens[:, s], slot_BxN), PAD))
    attn_BxNxS = jnp.where(at_end_BxN[..., None], fin.attn,
                           jnp.where(before_BxN[..., None], _gather(st.attn[:, s], slot_BxN), 0.0))
    slot_BxN = jnp.where(before_BxN, _gather(st.parents[:, s], slot_BxN), slot_BxN)
    return slot_BxN, (tok_BxN, attn_BxNxS)

  _, (tok_LxBxN, attn_LxBxNxS) = jax.lax.scan(back, fin.slot, jnp.arange(steps), reverse=True)
  return jnp.moveaxis(tok_LxBxN, 0, 2), jnp.moveaxis(attn_LxBxNxS, 0, 2)


def beam_search(encode: Callable, step: Callable, src_BxS, src_len_B, rule: LengthRule, *, beam: int,
                nbest: int = 1, alpha: float = 0.0, early_stop: bool = True, coverage_penalty: float = 0.0,
                controls: Controls = Controls(), prefix_BxP=None) -> dict:
  """`prefix_BxP`: each sentence's forced first tokens (PAD after them; None: none).

  Returns, best first per sentence: tokens (B, N, L) (PAD after EOS), lengths (B, N) (without EOS),
  scores (B, N) (normalised, plus the coverage penalty if any), logprobs (B, N) (raw sums, EOS included),
  attention (B, N, L, S), and the number of steps run. A slot that no hypothesis could fill (tiny vocabularies)
  has score -inf."""
  if not 1 <= nbest <= beam:
    raise ValueError(f'need 1 <= nbest <= beam, got nbest={nbest}, beam={beam}')
  k = beam
  batch, src_steps = src_BxS.shape
  steps = rule.buffer(src_steps)
  limit_B = rule.limits(src_len_B)
  prefix_BxP = no_prefix(batch) if prefix_BxP is None else prefix_BxP
  carry, memory = encode(src_BxS, src_len_B)
  carry, memory, limit_BK, prefix_BKxP = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0),
                                                      (carry, memory, limit_B, prefix_BxP))
  mask_BxS = jnp.arange(src_steps)[None, :] < src_len_B[:, None]
  penalised = coverage_penalty != 0
  state = BeamState(
      t=jnp.int32(0), y=jnp.full((batch * k,), BOS, jnp.int32), carry=carry,
      logp=jnp.full((batch, k), -jnp.inf).at[:, 0].set(0.0),
      tokens=jnp.full((batch, steps, k), PAD, jnp.int32), parents=jnp.zeros((batch, steps, k), jnp.int32),
      attn=jnp.zeros((batch, steps, k, src_steps)), done=jnp.zeros((batch,), bool),
      coverage=jnp.zeros((batch * k, src_steps if penalised else 0)), history=controls.history(batch * k, steps),
      fin=Finished(score=jnp.full((batch, nbest), -jnp.inf), logp=jnp.full((batch, nbest), -jnp.inf),
                   end=jnp.zeros((batch, nbest), jnp.int32), slot=jnp.zeros((batch, nbest), jnp.int32),
                   attn=jnp.zeros((batch, nbest, src_steps))))

  def cond(st: BeamState):
    return (st.t < steps) & ~st.done.all()

  def body(st: BeamState) -> BeamState:
    t, done_B = st.t, st.done
    carry, logp_BKxV, attn_BKxS = step(st.carry, st.y, memory)
    vocab = logp_BKxV.shape[-1]
    logp_BKxV = controls_lib.constrain(controls, logp_BKxV, controls_lib.At(t, st.history, prefix_BKxP, limit_BK))
    logp_BxKxV = logp_BKxV.reshape(batch, k, vocab)
    cand_BxKxV = jnp.where(done_B[:, None, None], -jnp.inf, st.logp[:, :, None] + logp_BxKxV)
    # The barriers keep XLA from folding the slices below into the top-k, which would make it a full sort on CPU.
    # One barrier per output: XLA simplifies a barrier over both into one on the top-k's tuple, which its
    # TopkDecomposer (in programs over several devices: pmap, shard_map) fails on, aborting the process.
    top_BxM, flat_BxM = jax.lax.top_k(cand_BxKxV.reshape(batch, k * vocab), 2 * k)
    top_BxM, flat_BxM = jax.lax.optimization_barrier(top_BxM), jax.lax.optimization_barrier(flat_BxM)
    parent_BxM, token_BxM = flat_BxM // vocab, flat_BxM % vocab
    attn_BxKxS = attn_BKxS.reshape(batch, k, src_steps)
    score_BxK = normalise(top_BxM[:, :k], t + 1, alpha)
    coverage_BKxS = st.coverage
    if penalised:  # each candidate's coverage is its parent's, this step included
      coverage_BKxS = coverage_BKxS + attn_BKxS
      ends_coverage_BxKxS = _gather(coverage_BKxS.reshape(batch, k, src_steps), parent_BxM[:, :k])
      score_BxK = score_BxK + coverage_penalty_of(ends_coverage_BxKxS, mask_BxS[:, None, :], coverage_penalty)

    # EOS among the K best candidates: into the buffer of the N best finished (kept ones first on ties).
    ends_BxK = (token_BxM[:, :k] == EOS) & jnp.isfinite(top_BxM[:, :k])
    new = Finished(score=jnp.where(ends_BxK, score_BxK, -jnp.inf),
                   logp=top_BxM[:, :k], end=jnp.full((batch, k), t), slot=parent_BxM[:, :k],
                   attn=_gather(attn_BxKxS, parent_BxM[:, :k]))
    pool = jax.tree.map(lambda old, x: jnp.concatenate([old, x], axis=1), st.fin, new)
    fin = jax.tree.map(lambda x: _gather(x, jax.lax.top_k(pool.score, nbest)[1]), pool)

    # The K best non-EOS candidates stay live (there are at most K EOS candidates among the 2K).
    live_BxK = jnp.argsort(token_BxM == EOS, axis=-1, stable=True)[:, :k]
    logp_BxK, parent_BxK, token_BxK = (jnp.take_along_axis(x, live_BxK, axis=1)
                                       for x in (top_BxM, parent_BxM, token_BxM))
    rows_BK = (jnp.arange(batch)[:, None] * k + parent_BxK).reshape(-1)
    bound_B = logp_BxK.max(-1) / jnp.maximum(length_penalty(t + 2, alpha), length_penalty(limit_B + 1, alpha))
    hopeless_B = bound_B <= fin.score[:, -1] if early_stop else jnp.isneginf(bound_B)
    return BeamState(t=t + 1, y=token_BxK.reshape(-1), carry=jax.tree.map(lambda x: x[rows_BK], carry),
                     coverage=coverage_BKxS[rows_BK],
                     history=controls_lib.record(st.history[rows_BK], token_BxK.reshape(-1), t),
                     logp=logp_BxK, tokens=st.tokens.at[:, t].set(token_BxK),
                     parents=st.parents.at[:, t].set(parent_BxK),
                     attn=st.attn.at[:, t].set(_gather(attn_BxKxS, parent_BxK)),
                     done=done_B | hopeless_B, fin=fin)

  out = jax.lax.while_loop(cond, body, state)
  tokens_BxNxL, attn_BxNxLxS = _backtrack(out, steps)
  return {'tokens': tokens_BxNxL, 'lengths': out.fin.end, 'scores': out.fin.score, 'logprobs': out.fin.logp,
          'attn': attn_BxNxLxS, 'steps': out.t}


@dataclasses.dataclass(frozen=True)
class Beam:
  """Beam search as a search (see search.py): the `nbest` best of a beam of `beam` per source."""
  rule: LengthRule
  beam: int
  nbest: int = 1
  alpha: float = 0.0
  early_stop: bool = True
  coverage_penalty: float = 0.0
  controls: Controls = Controls()

  def __call__(self, encode, step, src_BxS, src_len_B, keys_B=None, prefix_BxP=None) -> dict:
    del keys_B
    return beam_search(encode, step, src_BxS, src_len_B, self.rule, beam=self.beam, nbest=self.nbest,
                       alpha=self.alpha, early_stop=self.early_stop, coverage_penalty=self.coverage_penalty,
                       controls=self.controls, prefix_BxP=prefix_BxP)
