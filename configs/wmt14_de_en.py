"""German -> English news (wmt14_translate/de-en, ~4.5M training pairs; newstest2013 validation, 2014 test).

  python -m seq2seq_jax.data.translation wmt14_translate/de-en   # once, on a machine with network (GBs)
  seq2seq-jax train --config configs/wmt14_de_en.py --workdir workdirs/wmt14_de_en
  seq2seq-jax eval --workdir workdirs/wmt14_de_en --split test

Separate 16k-piece SentencePiece models (trained on an even subsample of at most 1M sentences); a 2-layer
bidirectional LSTM encoder and an LSTM decoder with Luong general attention and input feeding. Reading and
tokenizing the full training set takes a while (minutes) before the first step.
"""

from seq2seq_jax.config import default_config


def get_config():
  cfg = default_config()
  d = cfg.data
  d.task = 'tfds'
  d.tfds_name = 'wmt14_translate/de-en'
  d.tfds_source_key, d.tfds_target_key = 'de', 'en'
  d.source_tokenizer = d.target_tokenizer = 'spm'
  d.spm_vocab_size = 16_000
  d.max_source_len = d.max_target_len = 80
  d.batch_size = 256
  m = cfg.model
  m.cell = 'lstm'
  m.num_layers = 2
  m.embed_size, m.encoder_size, m.decoder_size = 512, 512, 1024
  m.bidirectional = True
  m.attention, m.style, m.input_feeding = 'general', 'luong', True
  m.dropout = 0.2
  t = cfg.train
  t.num_steps = 200_000         # ~11 epochs of the pairs kept
  t.learning_rate = 1e-3
  t.schedule = 'rsqrt'
  t.warmup_steps = 4000
  t.label_smoothing = 0.1
  t.log_every = 100
  t.eval_every = 10_000
  t.checkpoint_every = 5000
  t.eval_examples = 1000
  cfg.decode.max_len_cap = 160
  return cfg
