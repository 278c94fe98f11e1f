"""Copy a string of 1-12 letters ("abc" -> "abc"): the simplest check that the pipeline learns.

  seq2seq-jax train --config configs/copy.py --workdir workdirs/copy
  seq2seq-jax eval --workdir workdirs/copy --split test
"""

from seq2seq_jax.config import letters_task


def get_config():
  cfg = letters_task('copy')
  return cfg
