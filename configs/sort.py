"""Sort the letters of a string of 1-12 letters ("cab" -> "abc").

  seq2seq-jax train --config configs/sort.py --workdir workdirs/sort
  seq2seq-jax eval --workdir workdirs/sort --split test
"""

from seq2seq_jax.config import default_config


def get_config():
  cfg = default_config()
  cfg.data.task = 'sort'
  cfg.data.min_len, cfg.data.max_len, cfg.data.alphabet_size = 1, 12, 20
  cfg.data.batch_size = 64
  cfg.model.embed_size, cfg.model.encoder_size, cfg.model.decoder_size = 32, 64, 64
  cfg.model.attention_size = 64
  cfg.train.num_steps = 2000
  cfg.train.learning_rate = 5e-3
  cfg.train.eval_every = 500
  return cfg
