"""Analytic FLOPs of the model: 2·m·k·n for every matmul / einsum of the forward pass, nothing else.

B batch, S source positions, T target steps; the rest as in encoder.py / decoder.py / attention.py. Counted:
  encoder     per layer and direction: input projection (all S positions at once) and the S recurrences
  bridge      each decoder layer's initial state from the encoder's final state (h, and c for LSTM)
  keys        attention's key projection, once per sequence (additive: U h, general: h Wᵀ)
  per target step: embedding -> gates, the extra input (context or input feed) -> gates (attention 'none':
              once, as its context never changes), the recurrence,
              deeper layers (input and recurrence), attention (additive: query projection W s, the
              v-reduction over tanh(...) (B, S, A) and the context sum; dot-like: scores and context),
              luong's combine W_c [c; s], and the output projection to the vocabulary
Not counted: embedding gathers, elementwise gate math, softmax, loss, optimizer. A training step (forward,
and a backward pass whose matmuls cost twice the forward's: one product for each operand's gradient) is
taken as 3 × forward (model FLOPs: the attention that the backward pass recomputes is not counted again).
tests/test_bench.py checks `forward` against XLA's own count of a loop-free forward.
"""

from seq2seq_jax.model import ModelConfig

GATES = {'gru': 3, 'lstm': 4}


def _mm(m: int, k: int, n: int) -> int:
  return 2 * m * k * n


def encoder(c: ModelConfig, batch: int, src_len: int) -> int:
  """The (bi)RNN encoder over `src_len` positions (padding included: the scan runs over all of them)."""
  directions, g = (2 if c.bidirectional else 1), GATES[c.cell] * c.encoder_size
  total = 0
  for layer in range(c.num_layers):
    in_size = c.embed_size if layer == 0 else c.memory_size
    total += directions * (_mm(batch * src_len, in_size, g) + src_len * _mm(batch, c.encoder_size, g))
  return total


def _extra_size(c: ModelConfig) -> int:
  """What the first decoder layer reads beside the embedding (decoder._extra_size)."""
  if c.style == 'luong':
    return c.decoder_size if c.input_feeding else 0
  return c.memory_size


def _attend(c: ModelConfig, batch: int, src_len: int) -> int:
  """One decoder step's attention: scores and the weighted sum of the values."""
  if c.attention == 'none':
    return 0
  if c.attention == 'additive':
    scores = _mm(batch, c.decoder_size, c.attention_size) + _mm(batch * src_len, c.attention_size, 1)
  else:  # dot, general, scaled_dot: sᵀ keys against (B, S, H) keys
    scores = _mm(batch * src_len, c.decoder_size, 1)
  return scores + _mm(batch * src_len, 1, c.memory_size)  # context: weights (1, S) @ values (S, D) per row


def decoder(c: ModelConfig, batch: int, src_len: int, tgt_len: int) -> int:
  """The decoder: initial states and keys once, then `tgt_len` teacher-forced steps."""
  h, g, d = c.decoder_size, GATES[c.cell] * c.decoder_size, c.memory_size
  once = c.num_layers * _mm(batch, d, h) * (2 if c.cell == 'lstm' else 1)  # bridge
  once += {'additive': _mm(batch * src_len, d, c.attention_size),
           'general': _mm(batch * src_len, d, h)}.get(c.attention, 0)
  step = _mm(batch, c.embed_size + _extra_size(c), g) + _mm(batch, h, g)  # first layer: inputs, recurrence
  if c.attention == 'none':  # the extra input is the same context at every step: XLA projects it once
    once, step = once + _mm(batch, d, g), step - _mm(batch, d, g)
  step += (c.num_layers - 1) * (_mm(batch, h, g) + _mm(batch, h, g))
  step += _attend(c, batch, src_len)
  if c.style == 'luong':
    step += _mm(batch, d + h, h)
    features = h
  else:
    features = h + d
  step += _mm(batch, features, c.tgt_vocab)
  return once + tgt_len * step


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
