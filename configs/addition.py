"""Add two numbers of 1-3 digits ("12+345" -> "357"): the model must learn carries, right to left.

  seq2seq-jax train --config configs/addition.py --workdir workdirs/addition
  seq2seq-jax eval --workdir workdirs/addition --split test
"""

from seq2seq_jax.config import default_config


def get_config():
  cfg = default_config()
  cfg.data.task = 'addition'
  cfg.data.min_len, cfg.data.max_len = 1, 3    # digits per operand
  cfg.data.num_train = 100_000                 # of the ~1.2M possible sums; held-out splits are unseen
  cfg.data.batch_size = 128
  cfg.model.embed_size, cfg.model.encoder_size, cfg.model.decoder_size = 64, 128, 128
  cfg.model.attention_size = 128
  cfg.train.num_steps = 8000
  cfg.train.learning_rate = 3e-3
  cfg.train.eval_every = 2000
  return cfg
