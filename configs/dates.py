"""Normalise dates written out in 20 locales by CLDR's medium, long and full patterns (Babel) to ISO 8601,
character by character: "3. März 2021", "3 mars 2021", "2021年3月3日" -> "2021-03-03". Validation and test dates
(1,000 each) are held out: no wording of them occurs in training. Day and year are copied digit by digit;
the month must be read from its name in the locale's language.

  seq2seq-jax train --config configs/dates.py --workdir workdirs/dates                      # pointer-generator
  seq2seq-jax train --config configs/dates.py --workdir workdirs/dates-nocopy --config.model.copy=false
  seq2seq-jax eval --workdir workdirs/dates --split test
"""

from seq2seq_jax.config import default_config


def get_config():
  cfg = default_config()
  d = cfg.data
  d.task = 'dates'
  d.source_tokenizer = d.target_tokenizer = 'char'
  d.shared_vocab = True
  d.num_train, d.num_eval = 20_000, 1000
  d.max_source_len, d.max_target_len = 48, 12
  d.batch_size = 64
  m = cfg.model
  m.embed_size, m.encoder_size, m.decoder_size, m.attention_size = 32, 64, 128, 64
  m.copy = True
  t = cfg.train
  t.num_steps = 1500
  t.learning_rate = 3e-3
  t.eval_every = 500
  t.eval_examples = 500
  return cfg
