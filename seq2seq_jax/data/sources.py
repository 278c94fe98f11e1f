"""Where a split's text comes from (a built-in task, CMUdict, TFDS, or the user's files), and its encoding.

Every source yields `(source, target, where)` triples; `where` names the origin for error messages
("train.tsv:12", "cmudict_g2p/train #5").
"""

import collections

from seq2seq_jax.data import copying, tasks
from seq2seq_jax.data.pipeline import Examples
from seq2seq_jax.errors import ConfigError, DataError
from seq2seq_jax.data.vocab import Vocab

SPLITS = ('train', 'validation', 'test')


def load_pairs(cfg, split: str) -> list[tuple[str, str, str]]:
  """All (source, target, where) triples of `split`; a source with several targets appears several times."""
  d = cfg.data
  if split not in SPLITS:
    raise ConfigError(f'unknown split {split!r}; splits: {", ".join(SPLITS)}')
  path = d[f'{split}_file']
  if path:
    from seq2seq_jax.data import files
    return [(p.source, p.target, p.where) for p in files.read_pairs(path)]
  if d.train_file:
    raise ConfigError(f'data.train_file is set but data.{split}_file is not: give both')
  if d.task in tasks.GENERATED:
    return [(s, t, f'{d.task}/{split} #{i}') for i, (s, t) in enumerate(tasks.GENERATED[d.task](split, d, cfg.seed))]
  if d.task == 'cmudict':
    from seq2seq_jax.data import cmudict_tfds
    entries = cmudict_tfds.load_cmudict(split, d.data_dir or None, stress=d.keep_stress)
    return [(w, p, f'cmudict_g2p/{split} #{i}') for i, (w, prons) in enumerate(entries) for p in prons]
  if d.task == 'tfds':
    from seq2seq_jax.data import translation
    if not d.tfds_name:
      raise ConfigError("data.task='tfds' needs data.tfds_name, e.g. 'ted_hrlr_translate/pt_to_en'")
    pairs = translation.load_translation(d.tfds_name, split, d.tfds_source_key, d.tfds_target_key, d.data_dir or None)
    return [(s, t, f'{d.tfds_name}/{split} #{i}') for i, (s, t) in enumerate(pairs)]
  raise ConfigError(f'data.task={d.task!r} is not a known task (and no data.train_file is given)')


def group_references(pairs) -> list[tuple[str, list[str]]]:
  """Several pairs with the same source are several references; sources in first-appearance order."""
  refs = collections.OrderedDict()
  for source, target, _ in pairs:
    targets = refs.setdefault(source, [])
    if target not in targets:
      targets.append(target)
  return list(refs.items())


def build_vocabs(cfg, train_pairs) -> tuple[Vocab, Vocab]:
  """Source and target vocabularies of the training pairs (with data.shared_vocab one, of both sides' texts,
  returned twice); an spm tokenizer first trains its model on them."""
  d = cfg.data
  sides = [[pair[0] for pair in train_pairs], [pair[1] for pair in train_pairs]]
  if d.shared_vocab:
    sides = [sides[0] + sides[1]]
  vocabs = []
  for texts, tokenizer in zip(sides, (d.source_tokenizer, d.target_tokenizer)):
    spm_model = None
    if tokenizer == 'spm':
      from seq2seq_jax.data import subwords
      spm_model = subwords.train_sentencepiece(texts, d.spm_vocab_size)
    vocabs.append(Vocab.build(texts, tokenizer, spm_model=spm_model, min_count=d.min_count))
  return vocabs[0], vocabs[-1]


def encode(cfg, pairs, src_vocab: Vocab, tgt_vocab: Vocab) -> tuple[Examples, list, dict]:
  """Token ids of `pairs`. Returns (examples, the pairs kept, a report of UNKs and dropped pairs).

  Unknown symbols become UNK and are counted. A pair longer than data.max_source_len / max_target_len is an
  error when it comes from a user's file (named by file and line), and is dropped and counted otherwise.
  With model.copy the examples also hold each source's extended ids, and target symbols that only the source
  holds get their extended id instead of UNK (see copying.py; counted as 'copied').
  """
  d, copy = cfg.data, cfg.model.copy
  unknown, copied = collections.Counter(), 0
  src, tgt, ext, kept, dropped = [], [], [], [], 0
  for source, target, where in pairs:
    s = src_vocab.encode(source, where, unknown)
    if copy:
      extended = copying.extend(source, src_vocab, tgt_vocab)
      t = copying.encode_target(target, tgt_vocab, extended, unknown)
      copied += sum(i >= len(tgt_vocab) for i in t)
    else:
      t = tgt_vocab.encode(target, where, unknown)
    if not s or not t:
      raise DataError(f'{where}: empty {"source" if not s else "target"} after tokenization')
    if len(s) > d.max_source_len or len(t) > d.max_target_len:
      if d.train_file:
        raise DataError(f'{where}: {len(s)} source / {len(t)} target symbols, over data.max_source_len='
                        f'{d.max_source_len} / data.max_target_len={d.max_target_len}')
      dropped += 1
      continue
    src.append(s)
    tgt.append(t)
    if copy:
      ext.append(extended.ext)
    kept.append((source, target, where))
  report = {'unknown': dict(unknown), 'dropped_too_long': dropped, **({'copied': copied} if copy else {})}
  return Examples(src, tgt, d.bucket_step, ext if copy else None), kept, report
