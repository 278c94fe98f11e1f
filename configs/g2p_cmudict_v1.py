"""The G2P default as the README's attention, ensemble and sequence-training tables measured it (additive
attention, 8,800 steps), pinned so that a later change of configs/g2p_cmudict.py does not change what their
commands train (report/attention_kinds.py, report/seeds.py, report/sequence_training.py):

  seq2seq-jax train --config configs/g2p_cmudict_v1.py --workdir workdirs/g2p_v1    # test WER 25.27 greedy

It is configs/g2p_cmudict.py (data, sizes, schedule) with the attention kind and budget it had then (today the
same: the two train identical models).
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
