"""The encoder-decoder as a Flax Linen module.

The module only owns parameters (one pytree for the encoder, one for the decoder); the math lives in the pure
functions of `encoder.py` and `decoder.py`. Parameters are passed to `apply`:

  model = build(cfg.model, len(src_vocab), len(tgt_vocab), cfg.data.shared_vocab)  # the one way from a config
  params = model.init(rng, src_BxS, src_len_B, tgt_in_BxT)['params']
  logits_BxTxV, attn_BxTxS = model.apply({'params': params}, src_BxS, src_len_B, tgt_in_BxT)
  carry, memory = model.apply({'params': params}, src_BxS, src_len_B, method='encode')
  carry, logits_BxV, attn_BxS = model.apply({'params': params}, carry, y_B, memory, method='decode_step')

Training and every decoding algorithm go through `decoder.step`, so there is one copy of the step's math.
With `copy` (the pointer-generator, pointer.py) every call that encodes also takes `src_ext_BxS`, the extended
target id of each source position (data/copying.py), and the outputs are log-probabilities over the extended
vocabulary (V + S) where they are logits otherwise.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.model import attention, decoder, encoder


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Static (hashable) model hyper-parameters, from `cfg.model` and the vocabulary sizes."""
  src_vocab: int
  tgt_vocab: int
  cell: str = 'gru'
  embed_size: int = 64
  encoder_size: int = 128
  decoder_size: int = 128
  num_layers: int = 1
  bidirectional: bool = True
  attention: str = 'additive'
  attention_size: int = 128
  style: str = 'bahdanau'
  input_feeding: bool = True
  dropout: float = 0.0
  scan_unroll: int = 1
  compute_dtype: str = 'float32'
  remat: bool = False
  location_filters: int = 32
  location_width: int = 31
  mocha_width: int = 4
  monotonic_noise: float = 1.0
  monotonic_init_r: float = -4.0
  copy: bool = False
  tie_embeddings: bool = False
  share_embeddings: bool = False  # the encoder reads the decoder's embedding (tied, one vocabulary for both)

  def __post_init__(self):
    if self.share_embeddings and (not self.tie_embeddings or self.src_vocab != self.tgt_vocab):
      raise ValueError('share_embeddings needs tie_embeddings and one vocabulary for both sides')

  @property
  def memory_size(self) -> int:
    """D: size of the encoder's output per source position."""
    return self.encoder_size * (2 if self.bidirectional else 1)

  @classmethod
  def from_config(cls, m, src_vocab: int, tgt_vocab: int, shared_vocab: bool = False) -> 'ModelConfig':
    """From a (validated, see config.validate) `cfg.model` section, the vocabulary sizes and whether both sides
    share one vocabulary (`data.shared_vocab`: with `tie_embeddings` the encoder then reads the decoder's
    embedding)."""
    derived = ('src_vocab', 'tgt_vocab', 'share_embeddings')
    return cls(src_vocab=src_vocab, tgt_vocab=tgt_vocab, share_embeddings=bool(shared_vocab and m.tie_embeddings),
               **{f.name: m[f.name] for f in dataclasses.fields(cls) if f.name not in derived})


class Seq2Seq(nn.Module):
  """Embeddings -> (bi)RNN encoder -> attention decoder -> vocabulary logits."""
  c: ModelConfig

  def setup(self):
    c = self.c
    self.enc = self.param('encoder', _init_encoder, c)
    self.dec = self.param('decoder', decoder.init, c)

  def _params(self, tree):
    """Parameters in the compute dtype (a cast in the graph: gradients still reach the float32 originals)."""
    dtype = jnp.dtype(self.c.compute_dtype)
    return tree if dtype == jnp.float32 else jax.tree.map(lambda x: x.astype(dtype), tree)

  def encode(self, src_BxS, src_len_B, train: bool = False, src_ext_BxS=None) -> tuple[dict, dict]:
    """Encodes a padded batch; returns the decoder's initial carry and the attention memory."""
    c = self.c
    if c.copy and src_ext_BxS is None:
      if not self.is_initializing():
        raise ValueError('a copy model needs src_ext_BxS, the extended target id of every source position')
      src_ext_BxS = jnp.zeros_like(src_BxS)  # parameters do not depend on it
    rng = self.make_rng('dropout') if train and c.dropout > 0 else None
    enc = self._params(self.enc)
    if c.share_embeddings:
      enc = {**enc, 'embed': self._params(self.dec)['embed']}
    memory_BxSxD, finals = encoder.encode(enc, c.cell, src_BxS, src_len_B, dropout_rate=c.dropout, rng=rng,
                                          unroll=c.scan_unroll, remat=c.remat)
    return decoder.prepare(self._params(self.dec), c, memory_BxSxD, src_len_B, finals,
                           src_ext_BxS if c.copy else None)

  def decode_step(self, carry: dict, y_B, memory: dict) -> tuple[dict, jax.Array, jax.Array]:
    """One inference step from the previous tokens (B,): (carry, logits (B, V) or with `copy` log P (B, V + S),
    attention (B, S)); attention kinds with a hard decoding rule (monotonic, mocha) use it here."""
    dec = self._params(self.dec)
    yp_BxG = decoder.embed(dec, self.c, y_B, table=True)
    carry, features_BxF, attn_BxS, gate_B = decoder.step(dec, self.c, carry, yp_BxG, memory, hard=True)
    return carry, decoder.outputs(dec, self.c, features_BxF, attn_BxS, gate_B, memory=memory).astype(
        jnp.float32), attn_BxS

  def __call__(self, src_BxS, src_len_B, tgt_in_BxT, train: bool = False, tf_ratio=1.0,
               sample: bool = False, src_ext_BxS=None) -> tuple[jax.Array, jax.Array]:
    """Teacher-forced logits (B, T, V) (with `copy`: log P (B, T, V + S)) and attention (B, T, S), the
    attention soft (the expected alignment of monotonic kinds); `sample` turns on scheduled sampling. In
    training (`train`), kinds that take noise get it from the 'dropout' stream, drawn after the dropout masks
    (which it thus leaves as they were)."""
    out_BxTxV, attn_BxTxS, _ = self._teacher_forced(src_BxS, src_len_B, tgt_in_BxT, train, tf_ratio, sample,
                                                    src_ext_BxS)
    return out_BxTxV, attn_BxTxS

  def p_gen(self, src_BxS, src_len_B, tgt_in_BxT, src_ext_BxS) -> jax.Array:
    """A copy model's p_gen (B, T) at every step of the teacher-forced targets (e.g. its own greedy output)."""
    return jax.nn.sigmoid(self._teacher_forced(src_BxS, src_len_B, tgt_in_BxT, src_ext_BxS=src_ext_BxS)[2])

  def _teacher_forced(self, src_BxS, src_len_B, tgt_in_BxT, train: bool = False, tf_ratio=1.0,
                      sample: bool = False, src_ext_BxS=None) -> tuple:
    c = self.c
    carry, memory = self.encode(src_BxS, src_len_B, train, src_ext_BxS)
    dropout_rng = self.make_rng('dropout') if train and c.dropout > 0 else None
    noisy = train and attention.KINDS[c.attention].noisy and c.monotonic_noise > 0
    noise_rng = self.make_rng('dropout') if noisy else None
    sample_rng = self.make_rng('sampling') if sample else None
    out_BxTxV, attn_BxTxS, gate_BxT = decoder.teacher_forced(
        self._params(self.dec), c, carry, memory, tgt_in_BxT, tf_ratio=tf_ratio, dropout_rng=dropout_rng,
        sample_rng=sample_rng, noise_rng=noise_rng, with_gate=True)
    return out_BxTxV.astype(jnp.float32), attn_BxTxS, gate_BxT


def _init_encoder(rng, c: ModelConfig) -> dict:
  """The encoder's parameters; without an embedding of its own when it reads the decoder's."""
  params = encoder.init(rng, c.cell, c.src_vocab, c.embed_size, c.encoder_size, c.num_layers, c.bidirectional)
  return {'layers': params['layers']} if c.share_embeddings else params


def build(m, src_vocab: int, tgt_vocab: int, shared_vocab: bool = False) -> Seq2Seq:
  """The model of a config's `model` section for vocabularies of these sizes (`shared_vocab`: the config's
  `data.shared_vocab`)."""
  return Seq2Seq(ModelConfig.from_config(m, src_vocab, tgt_vocab, shared_vocab))


def abstract_params(model: Seq2Seq):
  """Shapes and dtypes of the model's parameters (jax.ShapeDtypeStruct leaves), computing nothing."""
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.ones((1, 2), jnp.int32),
                                           jnp.ones((1,), jnp.int32), jnp.ones((1, 1), jnp.int32)))['params']
