"""Masked cross-entropy with optional label smoothing, and token-level counts for metrics."""

import jax
import jax.numpy as jnp


def cross_entropy(logits_BxTxV, targets_BxT, weights_BxT, label_smoothing: float = 0.0):
  """Returns (sum of per-token losses, sum of weights); divide one by the other for the mean over real tokens.

  Sums (not means) are returned so that data-parallel code can add them over devices before dividing.
  With label smoothing the target distribution is (1 - ε) on the gold token and ε / V on every token.
  """
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32))
  nll_BxT = -jnp.take_along_axis(logp_BxTxV, targets_BxT[..., None], axis=-1)[..., 0]
  if label_smoothing > 0:
    nll_BxT = (1.0 - label_smoothing) * nll_BxT - label_smoothing * logp_BxTxV.mean(axis=-1)
  return (nll_BxT * weights_BxT).sum(), weights_BxT.sum()


def token_counts(logits_BxTxV, targets_BxT, weights_BxT) -> dict:
  """Sums for corpus metrics: correct tokens, tokens, and sequences whose every token is right."""
  correct_BxT = (logits_BxTxV.argmax(-1) == targets_BxT) * weights_BxT
  real_B = weights_BxT.max(axis=-1)
  seq_ok_B = (correct_BxT.sum(-1) == weights_BxT.sum(-1)) * real_B
  return {'correct': correct_BxT.sum(), 'tokens': weights_BxT.sum(), 'seq_correct': seq_ok_B.sum(),
          'sequences': real_B.sum()}
