"""Data for the pointer-generator: extended ids, extended targets and batches, min_count and shared
vocabularies, the greeting and dates generators (held-out names and dates, determinism), ROUGE, config checks."""

import collections
import datetime
import os
import re

import ml_collections
import numpy as np
import pytest

from seq2seq_jax import config
from seq2seq_jax.data import copy_tasks, copying, sources
from seq2seq_jax.data.pipeline import Examples
from seq2seq_jax.data.vocab import EOS, PAD, UNK, Vocab
from seq2seq_jax.errors import ConfigError
from seq2seq_jax.evaluation import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TGT = Vocab(['hello', 'welcome', ',', '!', 'Anna'], 'space')
SRC = Vocab(['hello', 'i', 'am', ',', '.', 'Anna', 'Bob'], 'space')


def test_extended_ids_and_targets():
  v = len(TGT)
  ext = copying.extend('hello , i am Zoe Zoe Bob .', SRC, TGT)
  assert ext.oovs == ('i', 'am', 'Zoe', 'Bob', '.')  # in order of first appearance, each once
  assert ext.ext == (TGT.index['hello'], TGT.index[','], v, v + 1, v + 2, v + 2, v + 3, v + 4)
  unknown = collections.Counter()
  target = copying.encode_target('Zoe , hello , welcome ! Carl', TGT, ext, unknown)
  assert target == [v + 2, TGT.index[','], TGT.index['hello'], TGT.index[','], TGT.index['welcome'],
                    TGT.index['!'], UNK]
  assert unknown == {'Carl': 1}  # in neither vocabulary nor the source
  assert copying.symbols(target + [v + 9], TGT, ext) == ['Zoe', ',', 'hello', ',', 'welcome', '!', '<unk>',
                                                         '<unk>']
  # '<unk>' (as a source UNK id reads) stays UNK; other specials' names are words of the text
  assert copying.extend_symbols(['<unk>', '</s>', 'Anna'], TGT) == copying.Extended(
      (UNK, v, TGT.index['Anna']), ('</s>',))


def test_batches_carry_extended_sources_padded_like_the_sources():
  examples = Examples([[4, 5], [6, 7, 8]], [[1], [2]], 4, src_ext=[[9, 10], [5, 11, 11]])
  b = examples.batch(np.array([0, 1, -1]))
  assert b['src_ext'].tolist() == [[9, 10, EOS, PAD], [5, 11, 11, EOS], [9, 10, EOS, PAD]]
  assert b['src'].shape == b['src_ext'].shape
  assert 'src_ext' not in Examples([[4, 5]], [[1]], 4).batch(np.array([0]))


def _cfg(*overrides):
  return config.load_config(os.path.join(ROOT, 'configs/greeting.py'), list(overrides))


def test_copy_encodes_targets_in_the_extended_vocabulary():
  pairs = [('hello , i am Zoe .', 'Zoe , hello !', 'x:1'), ('hello , i am Anna .', 'Carl , hello !', 'x:2')]
  examples, _, report = sources.encode(_cfg(), pairs, SRC, TGT)
  v = len(TGT)
  assert examples.tgt[0].tolist() == [v + 2, TGT.index[','], TGT.index['hello'], TGT.index['!']]  # Zoe copied
  assert examples.tgt[1][0] == UNK and report['copied'] == 1 and report['unknown']['Carl'] == 1
  assert examples.src_ext[0].tolist() == list(copying.extend(pairs[0][0], SRC, TGT).ext)
  plain, _, report = sources.encode(_cfg('model.copy=false'), pairs, SRC, TGT)
  assert plain.src_ext is None and plain.tgt[0][0] == UNK and 'copied' not in report


def test_min_count_and_one_shared_vocabulary():
  texts = ['a b b c', 'b c c']
  assert Vocab.build(texts, 'space').symbols[4:] == ['b', 'c', 'a']
  assert Vocab.build(texts, 'space', min_count=3).symbols[4:] == ['b', 'c']
  pairs = [('x y', 'y z', ''), ('y', 'z', '')]
  src, tgt = sources.build_vocabs(_cfg('data.min_count=2'), pairs)
  assert src is tgt and src.symbols[4:] == ['y', 'z']  # counted over both sides: y 3, z 2, x 1
  src, tgt = sources.build_vocabs(_cfg('data.min_count=2', 'data.shared_vocab=false'), pairs)
  assert src.symbols[4:] == ['y'] and tgt.symbols[4:] == ['z']


GREETING = ml_collections.ConfigDict({'num_train': 3000, 'num_eval': 200})


def test_greeting_holds_out_names_and_is_deterministic():
  train = copy_tasks.greeting('train', GREETING, 0)
  assert len(train) == 3000 and train == copy_tasks.greeting('train', GREETING, 0)
  assert train != copy_tasks.greeting('train', GREETING, 1)
  template_words = {w for s, t in copy_tasks.GREETINGS for w in (s + ' ' + t).split()} - {'{n}'}
  seen = {w for s, _ in train for w in s.split()} - template_words
  first, last = copy_tasks.name_lists()
  assert len(first) > 5000 and len(last) > 5000 and seen <= set(first) | set(last)
  for split in ('validation', 'test'):
    held_out = copy_tasks.greeting(split, GREETING, 0)
    assert len(held_out) == 200
    names = {w for s, _ in held_out for w in s.split()} - template_words
    assert names and not names & seen  # never a name token of training
  used = set()
  for source, target in train[:300]:  # each pair: one template, the same name on both sides
    matches = [(i, m) for i, (s, _) in enumerate(copy_tasks.GREETINGS)
               if (m := re.fullmatch(re.escape(s).replace(re.escape('{n}'), '(.+)'), source))]
    assert len(matches) == 1, source
    i, m = matches[0]
    assert target == copy_tasks.GREETINGS[i][1].format(n=m.group(1)) and 1 <= len(m.group(1).split()) <= 2
    used.add(i)
  assert used == set(range(len(copy_tasks.GREETINGS)))


def test_dates_hold_out_test_dates_and_are_deterministic():
  d = ml_collections.ConfigDict({'num_train': 2000, 'num_eval': 100})
  train = copy_tasks.dates('train', d, 0)
  assert train == copy_tasks.dates('train', d, 0) and train != copy_tasks.dates('train', d, 1)
  train_dates = {t for _, t in train}
  for split in ('validation', 'test'):
    held_out = copy_tasks.dates(split, d, 0)
    assert len(held_out) == 100 and len({t for _, t in held_out}) == 100
    assert not {t for _, t in held_out} & train_dates
  all_held = {t for s in ('validation', 'test') for _, t in copy_tasks.dates(s, d, 0)}
  assert len(all_held) == 200
  for source, target in train[:200]:
    date = datetime.date.fromisoformat(target)
    assert copy_tasks.FIRST_DATE <= date <= copy_tasks.LAST_DATE
    assert str(date.year) in source  # CLDR's medium, long and full patterns all write the year in full
  assert len({s for s, _ in train}) > 0.9 * len(train)
  assert re.search('[а-я]', ''.join(s for s, _ in train)) and '年' in ''.join(s for s, _ in train)  # many locales


def test_rouge_against_hand_computed_scores():
  # unigrams: hyp 3 of 3 in ref (6): P 1, R .5, F 2/3; bigrams 2 of 2 in 5: F 2·(1·.4)/1.4
  out = metrics.rouge(['the cat sat'], [['the cat sat on the mat']])
  assert out['rouge1'] == pytest.approx(200 / 3) and out['rougeL'] == pytest.approx(200 / 3)
  assert out['rouge2'] == pytest.approx(100 * 0.8 / 1.4)
  two = metrics.rouge(['the cat sat', 'a dog'], [['a bird'], ['the cat sat on the mat', 'a dog']])
  assert two['rouge1'] == pytest.approx((0.0 + 100.0) / 2)  # per item the best reference, then the mean


def test_config_checks():
  with pytest.raises(ConfigError, match="model.copy=True copies by attention weights, which attention='none'"):
    _cfg('model.attention=none')
  with pytest.raises(ConfigError, match='data.shared_vocab=True needs one tokenizer for both sides'):
    _cfg('data.target_tokenizer=char')
  with pytest.raises(ConfigError, match="config data.metric='bleu' is not one of , rouge"):
    _cfg('data.metric=bleu')
  with pytest.raises(ConfigError, match='data.min_count=0 must be at least 1'):
    _cfg('data.min_count=0')
  defaults = config.default_config()
  assert (defaults.model.copy, defaults.model.tie_embeddings, defaults.data.shared_vocab, defaults.data.min_count,
          defaults.data.metric) == (False, False, False, 1, '')
  assert config.task_metric(_cfg('data.metric=rouge')) == ('rougeL', 'max')
  assert config.task_metric(_cfg()) == ('wer', 'min')
