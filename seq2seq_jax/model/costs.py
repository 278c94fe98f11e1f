"""Task costs Δ(y, references) on token ids, for training on the metric (minimum risk training, SCST).

Pure jnp functions, computed inside the jitted train step (no host round trip). N rows (candidates), L
hypothesis width, R references per row, T reference width. A sequence is its ids up to its length (EOS and
padding after it are ignored); a reference slot of length 0 is empty (a row's references fill its first slots).

Registry `COSTS`, one entry per cost: `fn(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N, chars) -> (cost_N, key_N)`
against one reference; `cost` below takes the reference of smallest key per row ("the closest reference"):

  edit      Levenshtein distance / reference length; the closest reference is the one with the fewest edits
            (first on ties), as metrics.py's PER chooses it.
  zero_one  0 if the hypothesis equals a reference, else 1: G2P's word error, the built-in tasks' 1 − exact match.
  bleu      1 − sentence BLEU / 100 over target tokens (words, or subword pieces), as sacrebleu's
            sentence_bleu with tokenize='none' (exp smoothing, effective order); the best single reference.
  chrf      1 − chrF / 100 over the characters of the tokens (chrF2, 6-grams, whitespace removed), as
            sacrebleu's sentence_chrf; several references: the best one, as sacrebleu picks it.

`chars` is the target vocabulary's character table (`char_table`), needed by chrF only.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

BLEU_ORDER, CHRF_ORDER, CHRF_BETA = 4, 6, 2.0


def _positions_valid(width: int, len_N):
  return jnp.arange(width)[None, :] < len_N[:, None]


def edit_distance(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N):
  """Levenshtein distances (N,) int32. One DP row per hypothesis symbol: the row before the insertions is
  vectorised, and an insertion chain is a running minimum: new[j] = min_k≤j (base[k] + j − k)."""
  n, steps = hyp_NxL.shape
  j_T1 = jnp.arange(ref_NxT.shape[1] + 1)
  row0_NxT1 = jnp.broadcast_to(j_T1, (n, j_T1.shape[0]))
  pick = lambda row_NxT1: jnp.take_along_axis(row_NxT1, ref_len_N[:, None], axis=1)[:, 0]

  def body(carry, i):
    row_NxT1, dist_N = carry
    sub_NxT = row_NxT1[:, :-1] + (hyp_NxL[:, i][:, None] != ref_NxT)
    base_NxT1 = jnp.concatenate([row_NxT1[:, :1] + 1, jnp.minimum(sub_NxT, row_NxT1[:, 1:] + 1)], axis=1)
    new_NxT1 = jax.lax.cummin(base_NxT1 - j_T1, axis=1) + j_T1
    return (new_NxT1, jnp.where(hyp_len_N == i + 1, pick(new_NxT1), dist_N)), None

  (_, dist_N), _ = jax.lax.scan(body, (row0_NxT1, pick(row0_NxT1)), jnp.arange(steps))
  return dist_N


MAP_ELEMENTS = 1 << 24  # ngram_matches works on chunks of rows of at most this many pairwise comparisons


def ngram_matches(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N, orders: int):
  """Clipped n-gram matches Σ_g min(count_hyp(g), count_ref(g)) for n = 1..orders, (N, orders) int32.

  Pairwise: the i-th hypothesis n-gram matches iff fewer equal n-grams come before it in the hypothesis than the
  reference holds (so a gram occurring c_h times matches min(c_h, c_r) times). The n-gram equalities are built
  order by order from the symbol equalities: eq_n[i, j] = eq_{n−1}[i, j] ∧ eq_1[i + n − 1, j + n − 1]."""
  width, ref_width = hyp_NxL.shape[1], ref_NxT.shape[1]
  earlier_LxL = np.tril(np.ones((width, width), bool), -1)

  def one(args):
    hyp_L, hyp_len, ref_T, ref_len = args
    hh1_LxL, hr1_LxT = hyp_L[:, None] == hyp_L[None, :], hyp_L[:, None] == ref_T[None, :]
    hh, hr, out = hh1_LxL, hr1_LxT, []
    for n in range(1, orders + 1):
      p, q = width - n + 1, ref_width - n + 1
      if p <= 0 or q <= 0:
        out.append(jnp.int32(0))
        continue
      if n > 1:
        hh, hr = hh[:-1, :-1] & hh1_LxL[n - 1:, n - 1:], hr[:-1, :-1] & hr1_LxT[n - 1:, n - 1:]
      ok_h, ok_r = jnp.arange(p) + n <= hyp_len, jnp.arange(q) + n <= ref_len
      rank_P = (hh & earlier_LxL[:p, :p] & ok_h[None, :]).sum(-1)
      out.append((ok_h & (rank_P < (hr & ok_r[None, :]).sum(-1))).sum())
    return jnp.stack(out).astype(jnp.int32)

  chunk = max(1, min(hyp_NxL.shape[0], MAP_ELEMENTS // (width * (width + ref_width))))
  return jax.lax.map(one, (hyp_NxL, hyp_len_N, ref_NxT, ref_len_N), batch_size=chunk)


def _gram_totals(len_N, n: int):
  return jnp.maximum(len_N - n + 1, 0)


def sentence_bleu(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N):
  """Sentence BLEU in [0, 1] with sacrebleu's defaults for sentences: exp smoothing (the k-th order without a
  match gets precision 1 / (2^k · total)), effective order (orders the hypothesis is too short for are left
  out), brevity penalty exp(1 − r / h); 0 when nothing matches."""
  orders = range(1, BLEU_ORDER + 1)
  match_NxO = ngram_matches(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N, BLEU_ORDER)
  total_NxO = jnp.stack([_gram_totals(hyp_len_N, n) for n in orders], -1).astype(jnp.float32)
  used_NxO = total_NxO > 0
  zero_NxO = (match_NxO == 0) & used_NxO
  halvings_NxO = jnp.cumsum(zero_NxO, axis=-1).astype(jnp.float32)
  safe_total_NxO = jnp.maximum(total_NxO, 1.0)
  precision_NxO = jnp.where(zero_NxO, 1.0 / (2.0 ** halvings_NxO * safe_total_NxO), match_NxO / safe_total_NxO)
  used = jnp.maximum(used_NxO.sum(-1), 1)
  log_mean_N = jnp.where(used_NxO, jnp.log(jnp.where(used_NxO, precision_NxO, 1.0)), 0.0).sum(-1) / used
  h_N, r_N = hyp_len_N.astype(jnp.float32), ref_len_N.astype(jnp.float32)
  brevity_N = jnp.where(h_N < r_N, jnp.exp(1.0 - r_N / jnp.maximum(h_N, 1.0)), 1.0)
  return jnp.where(match_NxO.sum(-1) > 0, brevity_N * jnp.exp(log_mean_N), 0.0)


def char_table(symbols, tokenizer: str) -> tuple[np.ndarray, np.ndarray]:
  """The characters of every target symbol without whitespace (and SentencePiece's word mark ▁), as code
  points (V, C) int32 and counts (V,): what chrF sees of each token. The reserved symbols (ids 0..3) have none."""
  texts = ['' if i < 4 else ''.join((s.replace('\u2581', ' ') if tokenizer == 'spm' else s).split())
           for i, s in enumerate(symbols)]
  width = max(1, max(len(t) for t in texts))
  table = np.full((len(texts), width), -1, np.int32)
  for i, t in enumerate(texts):
    table[i, :len(t)] = [ord(c) for c in t]
  return table, np.array([len(t) for t in texts], np.int32)


def to_chars(tokens_NxL, len_N, chars):
  """Token ids -> their characters, packed from the left: (N, L·C) code points and the counts (N,)."""
  table_VxC, counts_V = (jnp.asarray(x) for x in chars)
  rows, steps = tokens_NxL.shape
  width = table_VxC.shape[1]
  n_NxL = jnp.where(_positions_valid(steps, len_N), counts_V[tokens_NxL], 0)
  ok_NxLC = (jnp.arange(width)[None, None, :] < n_NxL[..., None]).reshape(rows, steps * width)
  where_NxLC = jnp.where(ok_NxLC, jnp.cumsum(ok_NxLC, axis=1) - 1, steps * width)
  out_NxLC = jnp.full((rows, steps * width), -1, jnp.int32).at[jnp.arange(rows)[:, None], where_NxLC].set(
      table_VxC[tokens_NxL].reshape(rows, steps * width), mode='drop')
  return out_NxLC, ok_NxLC.sum(-1)


def chrf(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N):
  """chrF in [0, 1] of symbol sequences (sacrebleu's, without epsilon smoothing): precision and recall of each
  order n ≤ 6 that both sides have n-grams of, averaged over those orders, then F_β with β = 2."""
  orders = range(1, CHRF_ORDER + 1)
  match_NxO = ngram_matches(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N, CHRF_ORDER)
  hyp_NxO = jnp.stack([_gram_totals(hyp_len_N, n) for n in orders], -1).astype(jnp.float32)
  ref_NxO = jnp.stack([_gram_totals(ref_len_N, n) for n in orders], -1).astype(jnp.float32)
  used_NxO = (hyp_NxO > 0) & (ref_NxO > 0)
  used_N = jnp.maximum(used_NxO.sum(-1), 1)
  precision_N = jnp.where(used_NxO, match_NxO / jnp.maximum(hyp_NxO, 1.0), 0.0).sum(-1) / used_N
  recall_N = jnp.where(used_NxO, match_NxO / jnp.maximum(ref_NxO, 1.0), 0.0).sum(-1) / used_N
  b2 = CHRF_BETA ** 2
  denominator_N = b2 * precision_N + recall_N
  return jnp.where(denominator_N > 0, (1 + b2) * precision_N * recall_N / jnp.maximum(denominator_N, 1e-30), 0.0)


def _edit(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N, chars):
  dist_N = edit_distance(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N)
  return dist_N / jnp.maximum(ref_len_N, 1).astype(jnp.float32), dist_N


def _zero_one(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N, chars):
  wrong_N = (edit_distance(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N) > 0).astype(jnp.float32)
  return wrong_N, wrong_N


def _bleu(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N, chars):
  cost_N = 1.0 - sentence_bleu(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N)
  return cost_N, cost_N


def _chrf(hyp_NxL, hyp_len_N, ref_NxT, ref_len_N, chars):
  cost_N = 1.0 - chrf(*to_chars(hyp_NxL, hyp_len_N, chars), *to_chars(ref_NxT, ref_len_N, chars))
  return cost_N, cost_N


@dataclasses.dataclass(frozen=True)
class Cost:
  fn: Callable
  needs_chars: bool = False


COSTS = {'edit': Cost(_edit), 'zero_one': Cost(_zero_one), 'bleu': Cost(_bleu), 'chrf': Cost(_chrf, True)}


def cost(name: str, hyp_NxL, hyp_len_N, refs_NxRxT, refs_len_NxR, chars=None):
  """COSTS[name] of each row to its closest reference (smallest key, first on ties; empty slots never chosen)."""
  rows, refs, width = refs_NxRxT.shape
  tile = lambda x: jnp.repeat(x, refs, axis=0)
  cost_NR, key_NR = COSTS[name].fn(tile(hyp_NxL), tile(hyp_len_N), refs_NxRxT.reshape(rows * refs, width),
                                   refs_len_NxR.reshape(-1), chars)
  key_NxR = jnp.where(refs_len_NxR > 0, key_NR.reshape(rows, refs).astype(jnp.float32), jnp.inf)
  best_N = jnp.argmin(key_NxR, axis=-1)
  return jnp.take_along_axis(cost_NR.reshape(rows, refs), best_N[:, None], axis=1)[:, 0].astype(jnp.float32)
