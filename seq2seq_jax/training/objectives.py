"""Sequence-level objectives: training on the task's metric instead of (or mixed with) token cross-entropy.

  mrt   Minimum risk training (Shen et al., 2016). Per source a candidate set S from the model — K samples
        (with a temperature) or the K-best of a beam search, optionally plus the reference; duplicates count
        once — and the risk Σ_{y∈S} Q(y) Δ(y), Q(y) = p(y)^α / Σ_{y'∈S} p(y')^α.
  scst  Self-critical sequence training (Rennie et al., 2017): REINFORCE on K samples y_k with a baseline b_k,
        loss −(1/K) Σ_k (r(y_k) − b_k) log p(y_k), r = −Δ; b_k the greedy output's reward, or the mean reward
        of the other samples.

Δ is a task cost of model/costs.py, computed on token ids inside the step against every reference of the source
(the closest one, as the G2P metrics choose it). The search runs the decoders of seq2seq_jax/decoding over the
parameters before the update, in inference mode; no gradient flows through it. The gradient flows through
log p(y) of a teacher-forced rescoring of the candidates (training mode: dropout as in the cross-entropy),
normalised like the decoders' distributions (never PAD or BOS). Sampling keys are one per row of the global
batch, from the step's key, so a row draws the same samples on any number of devices.

B batch (this device's rows), K candidates per source, L candidate width, R references, W their width.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp

from seq2seq_jax import config as config_lib
from seq2seq_jax.data.vocab import BOS, PAD
from seq2seq_jax.decoding import search
from seq2seq_jax.decoding.beam import beam_search
from seq2seq_jax.decoding.fns import ModelFns
from seq2seq_jax.decoding.greedy import LengthRule, greedy
from seq2seq_jax.decoding.sampling import sample
from seq2seq_jax.model import costs


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceObjective:
  """What `candidates` and `loss` need from the config and the target vocabulary."""
  kind: str                 # mrt | scst
  cost: str                 # a model.costs.COSTS key
  rule: LengthRule          # the decoders' length rule (cfg.decode)
  candidates: str           # sample | beam
  num: int                  # K
  temperature: float
  alpha: float              # mrt's sharpness α
  reference: bool           # mrt: add the reference
  baseline: str             # scst: greedy | mean
  chars: tuple | None       # the target vocabulary's character table (chrF only)


def build(cfg, tgt_vocab) -> SequenceObjective | None:
  """The config's sequence-level objective (None for train.objective=xent)."""
  t = cfg.train
  if t.objective == 'xent':
    return None
  name = config_lib.task_cost(cfg)
  chars = costs.char_table(tgt_vocab.symbols, tgt_vocab.tokenizer) if costs.COSTS[name].needs_chars else None
  return SequenceObjective(kind=t.objective, cost=name, rule=search.length_rule(cfg.decode),
                           candidates=t.candidates, num=t.num_candidates, temperature=float(t.temperature),
                           alpha=float(t.mrt_alpha), reference=bool(t.mrt_reference), baseline=t.scst_baseline,
                           chars=chars)


def row_keys(rng, rows: int, axis_name=None):
  """One PRNG key per row, folded from its index in the global batch (device index × rows + row)."""
  first = jax.lax.axis_index(axis_name) * rows if axis_name else 0
  return jax.vmap(jax.random.fold_in, (None, 0))(rng, first + jnp.arange(rows))


def _cost(obj: SequenceObjective, tokens_BxKxL, lengths_BxK, batch):
  b, k, width = tokens_BxKxL.shape
  refs = jnp.repeat(batch['refs'], k, axis=0), jnp.repeat(batch['refs_len'], k, axis=0)
  return costs.cost(obj.cost, tokens_BxKxL.reshape(b * k, width), lengths_BxK.reshape(-1), *refs,
                    chars=obj.chars).reshape(b, k)


def _pad_to(x, width: int):
  return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - x.shape[-1])], constant_values=PAD)


def _add_reference(tokens_BxKxL, lengths_BxK, valid_BxK, batch):
  """The reference (tgt_out: y EOS PAD ...) as one more candidate."""
  ref_BxT = batch['tgt_out']
  width = max(tokens_BxKxL.shape[-1], ref_BxT.shape[-1])
  tokens = jnp.concatenate([_pad_to(tokens_BxKxL, width), _pad_to(ref_BxT, width)[:, None]], axis=1)
  ref_len_B = (ref_BxT != PAD).sum(-1) - 1  # (filler rows too: they copy a real row's target)
  return (tokens, jnp.concatenate([lengths_BxK, ref_len_B[:, None]], axis=1),
          jnp.concatenate([valid_BxK, jnp.ones_like(valid_BxK[:, :1])], axis=1))


def duplicates(tokens_BxKxL, valid_BxK):
  """(B, K): candidate k equals a valid earlier one (sequences are PAD after their EOS, so whole rows compare)."""
  k = tokens_BxKxL.shape[1]
  same_BxKxK = (tokens_BxKxL[:, :, None] == tokens_BxKxL[:, None, :]).all(-1)
  earlier_KxK = jnp.tril(jnp.ones((k, k), bool), -1)
  return (same_BxKxK & earlier_KxK & valid_BxK[:, None, :]).any(-1)


def candidates(obj: SequenceObjective, model, params, batch, keys_B) -> dict:
  """The candidates of every source and their costs: tokens (B, K', L) (PAD after EOS), lengths (B, K') (without
  EOS), valid (B, K') (a real, first occurrence), cost (B, K'), and for scst the baseline costs (B, K');
  K' = K (+1 with mrt's reference). Nothing here is differentiated."""
  fns = ModelFns(model)
  encode, step = functools.partial(fns.encode, params), functools.partial(fns.step, params)
  src_BxS, src_len_B = batch['src'], batch['src_len']
  b, k = src_BxS.shape[0], obj.num
  if obj.candidates == 'beam':
    out = beam_search(encode, step, src_BxS, src_len_B, obj.rule, beam=k, nbest=k)
    tokens, lengths, valid = out['tokens'], out['lengths'], jnp.isfinite(out['scores'])
  else:
    # Each source encoded once; its K copies (rows b·K + k) start from the same carry and memory.
    tiled = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), encode(src_BxS, src_len_B))
    keys_BK = jax.vmap(lambda key: jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(k)))(keys_B)
    out = sample(lambda *_: tiled, step, jnp.repeat(src_BxS, k, axis=0), jnp.repeat(src_len_B, k, axis=0),
                 keys_BK.reshape((b * k,) + keys_B.shape[1:]), obj.rule, temperature=obj.temperature)
    tokens, lengths = out['tokens'].reshape(b, k, -1), out['lengths'].reshape(b, k)
    valid = jnp.ones((b, k), bool)
  if obj.reference:
    tokens, lengths, valid = _add_reference(tokens, lengths, valid, batch)
  if obj.kind == 'mrt':
    valid = valid & ~duplicates(tokens, valid)
  out = {'tokens': tokens, 'lengths': lengths, 'valid': valid, 'cost': _cost(obj, tokens, lengths, batch)}
  if obj.kind == 'scst':
    if obj.baseline == 'greedy':
      g = greedy(encode, step, src_BxS, src_len_B, obj.rule)
      out['baseline'] = jnp.broadcast_to(_cost(obj, g['tokens'][:, None], g['lengths'][:, None], batch), (b, k))
    else:
      out['baseline'] = (out['cost'].sum(-1, keepdims=True) - out['cost']) / (k - 1)
  return jax.lax.stop_gradient(out)


def sequence_logprobs(model, params, src_BxS, src_len_B, tokens_BxKxL, lengths_BxK, rng=None, train=True):
  """log p(y) (B, K) of each candidate (its tokens and EOS) by teacher forcing, normalised over the tokens a
  decoder may emit (as the decoders that drew them)."""
  b, k, width = tokens_BxKxL.shape
  out_NxL = tokens_BxKxL.reshape(b * k, width)
  in_NxL = jnp.concatenate([jnp.full((b * k, 1), BOS, out_NxL.dtype), out_NxL[:, :-1]], axis=1)
  logits_NxLxV, _ = model.apply({'params': params}, jnp.repeat(src_BxS, k, axis=0), jnp.repeat(src_len_B, k, axis=0),
                                in_NxL, train=train, rngs={'dropout': rng} if rng is not None else None)
  logp_NxLxV = jax.nn.log_softmax(logits_NxLxV.at[..., jnp.array([PAD, BOS])].set(-jnp.inf))
  token_NxL = jnp.take_along_axis(logp_NxLxV, out_NxL[..., None], axis=-1)[..., 0]
  real_NxL = jnp.arange(width)[None, :] <= lengths_BxK.reshape(-1, 1)  # the tokens and EOS
  return jnp.where(real_NxL, token_NxL, 0.0).sum(-1).reshape(b, k)


def mrt_risk(logp_BxK, cost_BxK, valid_BxK, alpha: float):
  """Σ_y Q(y) Δ(y), Q(y) = p(y)^α / Σ_{y'} p(y')^α over the valid candidates of each source (B,)."""
  q_BxK = jax.nn.softmax(jnp.where(valid_BxK, alpha * logp_BxK, -jnp.inf), axis=-1)
  return (q_BxK * jnp.where(valid_BxK, cost_BxK, 0.0)).sum(-1)


def scst_loss(logp_BxK, cost_BxK, baseline_BxK):
  """−(1/K) Σ_k (r_k − b_k) log p(y_k) with rewards r = −cost (the advantages are constants) (B,)."""
  advantage_BxK = jax.lax.stop_gradient(baseline_BxK - cost_BxK)
  return -(advantage_BxK * logp_BxK).mean(-1)


def loss(obj: SequenceObjective, model, params, batch, cands: dict, rng=None):
  """The sequence loss summed over the real sources (divide by their number), and sums for the logs."""
  logp_BxK = sequence_logprobs(model, params, batch['src'], batch['src_len'], cands['tokens'], cands['lengths'],
                               rng)
  if obj.kind == 'mrt':
    per_B = mrt_risk(logp_BxK, cands['cost'], cands['valid'], obj.alpha)
  else:
    per_B = scst_loss(logp_BxK, cands['cost'], cands['baseline'])
  real_B = batch['weights'].max(-1) > 0
  counted_BxK = cands['valid'] & real_B[:, None]
  total = jnp.where(real_B, per_B, 0.0).sum()
  aux = {'sequence_loss_sum': total, 'candidate_cost_sum': jnp.where(counted_BxK, cands['cost'], 0.0).sum(),
         'candidates': counted_BxK.sum().astype(jnp.float32)}
  if 'baseline' in cands:
    aux['baseline_cost_sum'] = jnp.where(real_B, cands['baseline'].mean(-1), 0.0).sum()
  return total, aux
