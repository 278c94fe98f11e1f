"""Masked cross-entropy with optional label smoothing, token-level counts for metrics, and the auxiliary
attention losses (coverage, guided attention) on the teacher-forced attention (B, T, S)."""

import jax
import jax.numpy as jnp


def cross_entropy(logits_BxTxV, targets_BxT, weights_BxT, label_smoothing: float = 0.0,
                  smoothing_vocab: int | None = None):
  """Returns (sum of per-token losses, sum of weights); divide one by the other for the mean over real tokens.

  Sums (not means) are returned so that data-parallel code can add them over devices before dividing.
  With label smoothing the target distribution is (1 - ε) on the gold token and ε / V on every token, or on
  the first `smoothing_vocab` entries only (the pointer-generator's target vocabulary: its extended ids past it
  may have probability 0). The inputs may be logits or log-probabilities (some -inf), as the model emits.
  """
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32))
  nll_BxT = -jnp.take_along_axis(logp_BxTxV, targets_BxT[..., None], axis=-1)[..., 0]
  if label_smoothing > 0:
    smoothed_BxTxV = logp_BxTxV if smoothing_vocab is None else logp_BxTxV[..., :smoothing_vocab]
    nll_BxT = (1.0 - label_smoothing) * nll_BxT - label_smoothing * smoothed_BxTxV.mean(axis=-1)
  return (nll_BxT * weights_BxT).sum(), weights_BxT.sum()


def token_counts(logits_BxTxV, targets_BxT, weights_BxT) -> dict:
  """Sums for corpus metrics: correct tokens, tokens, and sequences whose every token is right."""
  correct_BxT = (logits_BxTxV.argmax(-1) == targets_BxT) * weights_BxT
  real_B = weights_BxT.max(axis=-1)
  seq_ok_B = (correct_BxT.sum(-1) == weights_BxT.sum(-1)) * real_B
  return {'correct': correct_BxT.sum(), 'tokens': weights_BxT.sum(), 'seq_correct': seq_ok_B.sum(),
          'sequences': real_B.sum()}


def coverage_loss(attn_BxTxS, weights_BxT):
  """See et al. (2017), "Get to the point": Σ over real target steps t of Σ_j min(α_{t,j}, c_{t,j}), with the
  coverage c_t = Σ_{t'<t} α_{t'} (zero at t = 0). Returns the sum (divide by the token count, as the
  cross-entropy's sum is, to get the per-token loss that is weighted by train.coverage_loss)."""
  attn_BxTxS = attn_BxTxS.astype(jnp.float32)
  before_BxTxS = jnp.cumsum(jnp.pad(attn_BxTxS[:, :-1], ((0, 0), (1, 0), (0, 0))), axis=1)
  return (jnp.minimum(attn_BxTxS, before_BxTxS).sum(-1) * weights_BxT).sum()


def guided_attention_loss(attn_BxTxS, src_len_B, weights_BxT, width: float):
  """Tachibana et al. (2018), guided attention: for a source of N positions and a target of T steps (the real
  ones: EOS included on both sides), W_{n,t} = 1 − exp(−(n/N − t/T)² / (2 g²)), n and t counted from 0; the
  loss is the mean over real (n, t) of α_{t,n} W_{n,t}. Returns (sum, number of real (n, t) pairs): sums, so
  that data-parallel code can add them over devices before dividing."""
  _, steps, src_steps = attn_BxTxS.shape
  n_len_Bx1x1 = jnp.maximum(src_len_B, 1).astype(jnp.float32)[:, None, None]
  t_len_Bx1x1 = jnp.maximum(weights_BxT.sum(-1), 1.0)[:, None, None]
  n_1x1xS = jnp.arange(src_steps, dtype=jnp.float32)[None, None, :]
  t_1xTx1 = jnp.arange(steps, dtype=jnp.float32)[None, :, None]
  w_BxTxS = 1.0 - jnp.exp(-(n_1x1xS / n_len_Bx1x1 - t_1xTx1 / t_len_Bx1x1) ** 2 / (2.0 * width ** 2))
  real_BxTxS = weights_BxT[:, :, None] * (n_1x1xS < src_len_B[:, None, None])
  return (attn_BxTxS.astype(jnp.float32) * w_BxTxS * real_BxTxS).sum(), real_BxTxS.sum()
