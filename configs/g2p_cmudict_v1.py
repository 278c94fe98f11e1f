"""The G2P default until the attention comparison: additive attention, 8,800 steps (README, Attention).

The base of the README's attention, ensemble and sequence-training tables (report/attention_kinds.py,
report/seeds.py, report/sequence_training.py), kept so that their commands still train what they measured:

  seq2seq-jax train --config configs/g2p_cmudict_v1.py --workdir workdirs/g2p_v1    # test WER 25.27 greedy

It is configs/g2p_cmudict.py (data, sizes, schedule) with that config's attention kind and budget of then.
"""

import os

from seq2seq_jax.config import load_config


def get_config():
  cfg = load_config(os.path.join(os.path.dirname(__file__), 'g2p_cmudict.py'))
  cfg.model.attention = 'additive'
  cfg.train.num_steps = 8800
  cfg.train.eval_every = 2200
  cfg.train.checkpoint_every = 2200
  return cfg
