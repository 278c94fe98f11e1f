"""seq2seq_jax: RNN encoder-decoder models with attention in functional JAX/Flax."""

__version__ = "0.1.0"
