"""Sort the letters of a string of 1-12 letters ("cab" -> "abc").

  seq2seq-jax train --config configs/sort.py --workdir workdirs/sort
  seq2seq-jax eval --workdir workdirs/sort --split test
"""

from seq2seq_jax.config import letters_task


def get_config():
  cfg = letters_task('sort')
  cfg.train.num_steps = 2000
  return cfg
