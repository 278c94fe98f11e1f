"""Greet people by name ("hello , i am Anna Schmidt ." -> "Anna Schmidt , hello , welcome !"): word tokens,
names from Faker's name lists of 14 locales; validation and test greet only names never seen in training, so
their words are outside every vocabulary built from the training data and must be copied.

  seq2seq-jax train --config configs/greeting.py --workdir workdirs/greeting                # pointer-generator
  seq2seq-jax train --config configs/greeting.py --workdir workdirs/greeting-nocopy --config.model.copy=false
  seq2seq-jax eval --workdir workdirs/greeting --split test

One vocabulary for both sides, tied embeddings; words seen fewer than 10 times in training (a name counts on
both sides: names met at most 4 times) are left out of it (UNK, ~2,000 words stay), so training too has names
that only the copy path can produce.
"""

from seq2seq_jax.config import default_config


def get_config():
  cfg = default_config()
  d = cfg.data
  d.task = 'greeting'
  d.source_tokenizer = d.target_tokenizer = 'space'
  d.shared_vocab = True
  d.min_count = 10
  d.num_train, d.num_eval = 20_000, 1000
  d.max_source_len = d.max_target_len = 16
  d.batch_size = 64
  m = cfg.model
  m.embed_size, m.encoder_size, m.decoder_size, m.attention_size = 64, 64, 128, 64
  m.tie_embeddings = True
  m.copy = True
  t = cfg.train
  t.num_steps = 1500
  t.learning_rate = 3e-3
  t.eval_every = 500
  t.eval_examples = 500
  return cfg
