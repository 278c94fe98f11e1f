"""Analytic FLOPs of the model: 2·m·k·n for every matmul / einsum of the forward pass, nothing else.

B batch, S source positions, T target steps; the rest as in encoder.py / decoder.py / attention.py. Counted:
  encoder     per layer and direction: input projection (all S positions at once) and the S recurrences
  bridge      each decoder layer's initial state from the encoder's final state (one per cell state array)
  keys        attention's key projection, once per sequence (the kind's `flops_keys`)
  per target step: embedding -> gates, the extra input (context or input feed) -> gates (attention 'none':
              once, as its context never changes), the recurrence, deeper layers (input and recurrence),
              attention (the kind's `flops_scores` and the context sum), the style's own matmuls (luong's
              combine W_c [c; s]), and the output projection to the vocabulary (tied embeddings: the
              projection to the embedding size, if any, and the product with the embedding's transpose)
  copy        the pointer-generator's p_gen: w_x·x, w_c·c and w_s·s per step (its scatter-add of the attention
              into the extended vocabulary, like its log-space mixture, is not a matmul)
Not counted: embedding gathers, elementwise gate math, softmax, loss, optimizer. A training step (forward,
and a backward pass whose matmuls cost twice the forward's: one product for each operand's gradient) is
taken as 3 × forward (model FLOPs: the attention that the backward pass recomputes is not counted again).
Everything kind-, cell- or style-specific is read from the registries. tests/test_bench.py checks `forward`
against XLA's own count of a loop-free forward.
"""

from seq2seq_jax.model.attention import KINDS
from seq2seq_jax.model.cells import CELLS
from seq2seq_jax.model.decoder import STYLES
from seq2seq_jax.model.seq2seq import ModelConfig


def _mm(m: int, k: int, n: int) -> int:
  return 2 * m * k * n


def encoder(c: ModelConfig, batch: int, src_len: int) -> int:
  """The (bi)RNN encoder over `src_len` positions (padding included: the scan runs over all of them)."""
  directions, g = (2 if c.bidirectional else 1), CELLS[c.cell].gates * c.encoder_size
  total = 0
  for layer in range(c.num_layers):
    in_size = c.embed_size if layer == 0 else c.memory_size
    total += directions * (_mm(batch * src_len, in_size, g) + src_len * _mm(batch, c.encoder_size, g))
  return total


def _attend(c: ModelConfig, batch: int, src_len: int) -> int:
  """One decoder step's attention: scores and the weighted sum of the values."""
  kind = KINDS[c.attention]
  if not kind.attends:
    return 0
  # context: weights (1, S) @ values (S, D) per row
  return kind.flops_scores(c, batch, src_len) + _mm(batch * src_len, 1, c.memory_size)


def decoder(c: ModelConfig, batch: int, src_len: int, tgt_len: int) -> int:
  """The decoder: initial states and keys once, then `tgt_len` teacher-forced steps."""
  h, g, d = c.decoder_size, CELLS[c.cell].gates * c.decoder_size, c.memory_size
  kind, style = KINDS[c.attention], STYLES[c.style]
  once = c.num_layers * _mm(batch, d, h) * CELLS[c.cell].num_states  # bridge
  once += kind.flops_keys(c, batch, src_len)
  step = _mm(batch, c.embed_size + style.extra_size(c), g) + _mm(batch, h, g)  # first layer: inputs, recurrence
  if not kind.attends:  # the extra input is the same context at every step: XLA projects it once
    once, step = once + _mm(batch, d, g), step - _mm(batch, d, g)
  step += (c.num_layers - 1) * (_mm(batch, h, g) + _mm(batch, h, g))
  step += _attend(c, batch, src_len)
  step += style.flops_step(c, batch)
  step += output(c, batch)
  if c.copy:
    step += _mm(batch, c.embed_size + d + h, 1)
  return once + tgt_len * step


def output(c: ModelConfig, batch: int) -> int:
  """One step's projection of the features to the vocabulary logits."""
  features = STYLES[c.style].feature_size(c)
  if not c.tie_embeddings:
    return _mm(batch, features, c.tgt_vocab)
  projection = _mm(batch, features, c.embed_size) if features != c.embed_size else 0
  return projection + _mm(batch, c.embed_size, c.tgt_vocab)


def forward(c: ModelConfig, batch: int, src_len: int, tgt_len: int) -> int:
  """Matmul FLOPs of one teacher-forced forward pass over a (batch, src_len) / (batch, tgt_len) batch."""
  return encoder(c, batch, src_len) + decoder(c, batch, src_len, tgt_len)


def train_step(c: ModelConfig, batch: int, src_len: int, tgt_len: int) -> int:
  """One training step: 3 × forward (the backward pass's matmuls cost twice the forward's)."""
  return 3 * forward(c, batch, src_len, tgt_len)


def useful_train_step(c: ModelConfig, src_len_B, weights_BxT) -> int:
  """`train_step` at each real sentence's own lengths (source with EOS, target with EOS); filler rows
  (all-zero weights) count nothing."""
  tgt_len_B = weights_BxT.sum(axis=-1)
  return sum(train_step(c, 1, int(s), int(t)) for s, t in zip(src_len_B, tgt_len_B) if t > 0)
