"""Reverse a string of 1-12 letters ("abc" -> "cba"): a quick check that attention works.

  seq2seq-jax train --config configs/reverse.py --workdir workdirs/reverse
  seq2seq-jax eval --workdir workdirs/reverse --split test
"""

from seq2seq_jax.config import letters_task


def get_config():
  cfg = letters_task('reverse')
  return cfg
