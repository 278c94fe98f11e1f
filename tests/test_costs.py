"""The task costs of model/costs.py (computed on token ids inside the train step) against metrics.py and
sacrebleu on thousands of random pairs."""

import jax
import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF

from seq2seq_jax.evaluation import metrics
from seq2seq_jax.model import costs

PAIRS = 3000
FIRST = 4  # ids 0..3 are reserved


def _random_refs(rng, rows, vocab, max_len, max_refs):
  """Random hypotheses (lengths 0..max_len) and 1..max_refs references (1..max_len), many of them close to the
  hypothesis (a copy with a few edits), so that every cost takes small and large values."""
  width = max_len + 3  # room for EOS and padding, which the costs must ignore
  hyp, hyp_len = np.zeros((rows, width), np.int32), np.zeros((rows,), np.int32)
  refs, refs_len = np.zeros((rows, max_refs, width), np.int32), np.zeros((rows, max_refs), np.int32)
  for i in range(rows):
    h = rng.integers(FIRST, FIRST + vocab, rng.integers(0, max_len + 1))
    hyp[i, :len(h)], hyp[i, len(h)], hyp_len[i] = h, 2, len(h)
    for r in range(rng.integers(1, max_refs + 1)):
      if len(h) and rng.random() < 0.6:
        ref = list(h)
        for _ in range(rng.integers(0, 3)):
          j = int(rng.integers(0, len(ref)))
          op = rng.integers(3)
          if op == 0:
            ref[j] = int(rng.integers(FIRST, FIRST + vocab))
          elif op == 1 and len(ref) > 1:
            del ref[j]
          elif len(ref) < max_len:
            ref.insert(j, int(rng.integers(FIRST, FIRST + vocab)))
      else:
        ref = list(rng.integers(FIRST, FIRST + vocab, rng.integers(1, max_len + 1)))
      refs[i, r, :len(ref)], refs[i, r, len(ref)], refs_len[i, r] = ref, 2, len(ref)
  hyp[:, -1] = rng.integers(FIRST, FIRST + vocab, rows)  # junk after EOS: must not count
  return hyp, hyp_len, refs, refs_len


def _cost(name, hyp, hyp_len, refs, refs_len, chars=None):
  return np.asarray(jax.jit(lambda *a: costs.cost(name, *a, chars=chars))(hyp, hyp_len, refs, refs_len))


def _seqs(x, lengths):
  return [list(map(int, row[:n])) for row, n in zip(x, lengths)]


def test_edit_cost_is_metrics_closest_reference_distance_over_its_length():
  hyp, hyp_len, refs, refs_len = _random_refs(np.random.default_rng(0), PAIRS, 6, 14, 3)
  got = _cost('edit', hyp, hyp_len, refs, refs_len)
  want = []
  for h, rs, ls in zip(_seqs(hyp, hyp_len), refs, refs_len):
    dist, ref_len = metrics.closest_reference(h, [list(r[:n]) for r, n in zip(rs, ls) if n])
    want.append(dist / ref_len)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
  assert 0.2 < np.mean(np.array(want) == 0) < 0.8 and np.max(want) > 1  # exact, close and far pairs
  # The distance alone, one reference: exactly metrics.edit_distance.
  dist = np.asarray(jax.jit(costs.edit_distance)(hyp, hyp_len, refs[:, 0], refs_len[:, 0]))
  assert list(dist) == [metrics.edit_distance(h, list(r[:n]))
                        for h, r, n in zip(_seqs(hyp, hyp_len), refs[:, 0], refs_len[:, 0])]


def test_zero_one_cost_is_metrics_word_error():
  hyp, hyp_len, refs, refs_len = _random_refs(np.random.default_rng(1), PAIRS, 4, 6, 3)
  got = _cost('zero_one', hyp, hyp_len, refs, refs_len)
  for i, (h, rs, ls) in enumerate(zip(_seqs(hyp, hyp_len), refs, refs_len)):
    want = metrics.error_rates([h], [[list(r[:n]) for r, n in zip(rs, ls) if n]])['wer'] / 100
    assert got[i] == want, i
  assert 0.2 < got.mean() < 0.8


def test_bleu_cost_is_one_minus_sacrebleu_sentence_bleu_on_the_tokens():
  hyp, hyp_len, refs, refs_len = _random_refs(np.random.default_rng(2), PAIRS, 5, 16, 2)
  got = _cost('bleu', hyp, hyp_len, refs, refs_len)
  bleu = BLEU(tokenize='none', effective_order=True)  # what sacrebleu.sentence_bleu uses, on our tokens
  text = lambda seq: ' '.join(f'w{t}' for t in seq)
  want = [1 - max(bleu.sentence_score(text(h), [text(r[:n])]).score for r, n in zip(rs, ls) if n) / 100
          for h, rs, ls in zip(_seqs(hyp, hyp_len), refs, refs_len)]
  np.testing.assert_allclose(got, want, atol=2e-6)
  want = np.array(want)
  assert np.mean(want < 1e-6) > 0.05 and np.mean(want == 1) > 0.05 and np.mean((want > 0.1) & (want < 0.9)) > 0.3


def test_chrf_cost_is_one_minus_sacrebleu_chrf_of_the_detokenised_text():
  symbols = ['<pad>', '<s>', '</s>', '<unk>', 'a', 'b', 'ab', '\u2581a', '\u2581b', '\u2581', 'ba', 'aab', 'c',
             '\u2581cab']
  chars = costs.char_table(symbols, 'spm')
  hyp, hyp_len, refs, refs_len = _random_refs(np.random.default_rng(3), PAIRS, len(symbols) - FIRST, 12, 3)
  got = _cost('chrf', hyp, hyp_len, refs, refs_len, chars)
  chrf = CHRF()
  text = lambda seq: ''.join(symbols[t] for t in seq).replace('\u2581', ' ').strip()
  want = [1 - chrf.sentence_score(text(h), [text(r[:n]) for r, n in zip(rs, ls) if n]).score / 100
          for h, rs, ls in zip(_seqs(hyp, hyp_len), refs, refs_len)]
  np.testing.assert_allclose(got, want, atol=2e-6)
  assert np.mean(np.array(want) < 0.5) > 0.2 and np.mean(np.array(want) == 1) > 0.02


def test_char_table():
  table, counts = costs.char_table(['<pad>', '<s>', '</s>', '<unk>', '\u2581the', 'x', '\u2581'], 'spm')
  assert list(counts) == [0, 0, 0, 0, 3, 1, 0]
  assert [chr(c) for c in table[4, :3]] == list('the')
  table, counts = costs.char_table(['<pad>', '<s>', '</s>', '<unk>', 'a', ' '], 'char')
  assert list(counts) == [0, 0, 0, 0, 1, 0]


@pytest.mark.parametrize('name', sorted(costs.COSTS))
def test_equal_sequences_cost_nothing_and_junk_after_the_length_is_ignored(name):
  chars = costs.char_table(['<pad>', '<s>', '</s>', '<unk>'] + list('abcdefgh'), 'char')
  seq = np.array([[4, 5, 6, 7, 8, 2, 9, 9]], np.int32)
  other = np.array([[[4, 5, 6, 7, 8, 2, 0, 0], [9, 9, 9, 2, 0, 0, 0, 0]]], np.int32)
  assert _cost(name, seq, np.array([5]), other, np.array([[5, 3]]), chars)[0] == 0.0
  assert _cost(name, seq, np.array([5]), other[:, ::-1], np.array([[3, 5]]), chars)[0] == 0.0
  assert _cost(name, seq, np.array([5]), other[:, 1:], np.array([[3]]), chars)[0] > 0.5
