"""Portuguese -> English TED talk transcripts (ted_hrlr_translate/pt_to_en, ~52k training pairs), subwords.

  python -m seq2seq_jax.data.translation ted_hrlr_translate/pt_to_en   # once, on a machine with network
  seq2seq-jax train --config configs/ted_hrlr_pt_en.py --workdir workdirs/ted_pt_en
  seq2seq-jax eval --workdir workdirs/ted_pt_en --split test

Separate 8k-piece SentencePiece models for Portuguese and English; a bidirectional GRU encoder with Bahdanau
(additive) attention. Pairs over 64 pieces on either side (a few percent) are dropped from training.
"""

from seq2seq_jax.config import default_config


def get_config():
  cfg = default_config()
  d = cfg.data
  d.task = 'tfds'
  d.tfds_name = 'ted_hrlr_translate/pt_to_en'
  d.tfds_source_key, d.tfds_target_key = 'pt', 'en'
  d.source_tokenizer = d.target_tokenizer = 'spm'
  d.spm_vocab_size = 8000
  d.max_source_len = d.max_target_len = 64
  d.batch_size = 128
  m = cfg.model
  m.cell = 'gru'
  m.embed_size, m.encoder_size, m.decoder_size = 256, 256, 512
  m.bidirectional = True
  m.attention, m.attention_size, m.style = 'additive', 256, 'bahdanau'
  m.dropout = 0.3
  t = cfg.train
  t.num_steps = 12_000          # ~30 epochs
  t.learning_rate = 1e-3
  t.warmup_steps = 500
  t.label_smoothing = 0.1
  t.eval_every = 2000
  t.checkpoint_every = 2000
  t.eval_examples = 500
  cfg.decode.max_len_cap = 128
  return cfg
