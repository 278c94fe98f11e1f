"""The model: pure functions (cells, attention kinds, encoder, decoder) and the Linen module that owns their
parameters, plus its loss and its analytic FLOP count.

Registries (one entry adds one kind): `attention.KINDS`, `cells.CELLS`, `decoder.STYLES`.
May import: `errors` only (and jax, flax). Nothing here knows about data, decoding loops or training.
"""

from seq2seq_jax.model.seq2seq import ModelConfig, Seq2Seq, abstract_params, build  # noqa: F401
