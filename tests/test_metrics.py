"""Tests for seq2seq_jax.metrics: expected values are worked out by hand in the comments."""

import functools
import math
import random

import pytest
import sacrebleu

from seq2seq_jax.evaluation import metrics


# --- edit_distance -------------------------------------------------------------------------------


def test_edit_distance_hand_cases():
  assert metrics.edit_distance(['K', 'AE', 'T'], ['K', 'AE', 'T']) == 0  # identical
  assert metrics.edit_distance([], []) == 0
  assert metrics.edit_distance([], ['A', 'B', 'C']) == 3  # three insertions
  assert metrics.edit_distance(['A', 'B'], []) == 2  # two deletions
  assert metrics.edit_distance(['K', 'AE', 'T'], ['K', 'AH', 'T']) == 1  # AE -> AH
  assert metrics.edit_distance(['K', 'T'], ['K', 'AE', 'T']) == 1  # insert AE
  assert metrics.edit_distance(['K', 'AE', 'AE', 'T'], ['K', 'AE', 'T']) == 1  # delete one AE
  # kitten -> sitting: k->s, e->i, insert g = 3.
  assert metrics.edit_distance(list('kitten'), list('sitting')) == 3
  # flaw -> lawn: delete f, insert n = 2 (4 substitutions would be worse).
  assert metrics.edit_distance(list('flaw'), list('lawn')) == 2
  # intention -> execution: delete i, n->e, t->x, insert c, n->u = 5 (textbook example).
  assert metrics.edit_distance(list('intention'), list('execution')) == 5
  # Symbols are compared whole: 'AH0' vs 'AH' is one substitution, not a character edit.
  assert metrics.edit_distance(['AH0', 'B'], ['AH', 'B']) == 1


def test_edit_distance_symmetric():
  pairs = [(list('kitten'), list('sitting')), ([], ['A']), (['K', 'T'], ['K', 'AE', 'T']),
           (list('abcdef'), list('azced'))]
  for a, b in pairs:
    assert metrics.edit_distance(a, b) == metrics.edit_distance(b, a)
  # abcdef -> azced: b->z, delete d, f->d = 3 (the only common subsequences are 3 long).
  assert metrics.edit_distance(list('abcdef'), list('azced')) == 3


def test_edit_distance_matches_recursive_definition():
  """The rolling-row DP agrees with the textbook recursion on small random sequences."""

  def slow(a: tuple, b: tuple) -> int:
    @functools.cache
    def d(i: int, j: int) -> int:
      if i == 0 or j == 0:
        return i + j
      return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
    return d(len(a), len(b))

  rng = random.Random(0)
  for _ in range(200):
    a = tuple(rng.choice('ABC') for _ in range(rng.randint(0, 6)))
    b = tuple(rng.choice('ABC') for _ in range(rng.randint(0, 6)))
    assert metrics.edit_distance(a, b) == slow(a, b)


# --- closest_reference ---------------------------------------------------------------------------


def test_closest_reference_picks_minimum():
  hyp = ['D', 'AO', 'G']
  # distances: [D AA G Z] = 2 (AO->AA, +Z), [D AA G] = 1 (AO->AA), [K AE T] = 3.
  refs = [['D', 'AA', 'G', 'Z'], ['D', 'AA', 'G'], ['K', 'AE', 'T']]
  assert metrics.closest_reference(hyp, refs) == (1, 3)
  # An exact match wins wherever it is.
  assert metrics.closest_reference(hyp, refs + [['D', 'AO', 'G']]) == (0, 3)


def test_closest_reference_tie_goes_to_first():
  hyp = ['A', 'B']
  # [A B C] -> 1 (insert C), [A] -> 1 (B deleted): tie; the first (length 3) wins, not the shorter.
  assert metrics.closest_reference(hyp, [['A', 'B', 'C'], ['A']]) == (1, 3)
  assert metrics.closest_reference(hyp, [['A'], ['A', 'B', 'C']]) == (1, 1)


def test_closest_reference_empty_refs_raises():
  with pytest.raises(ValueError, match='no|empty'):
    metrics.closest_reference(['A'], [])


# --- error_rates ---------------------------------------------------------------------------------


def test_error_rates_hand_corpus():
  hyps = [['K', 'AE', 'T'], ['D', 'AO', 'G'], ['F', 'IH', 'SH']]
  refs = [
      # Matches the second reference exactly: distance 0, length 3.
      [['K', 'AH', 'T'], ['K', 'AE', 'T']],
      # [D AA G Z] -> 2, [D AA G] -> 1 (AO->AA): closest is the shorter one, distance 1, length 3.
      [['D', 'AA', 'G', 'Z'], ['D', 'AA', 'G']],
      # F IH SH vs F IY SH IH: IH->IY and insert IH = 2 (never 1: F IH SH is no subsequence), length 4.
      [['F', 'IY', 'SH', 'IH']],
  ]
  out = metrics.error_rates(hyps, refs)
  # PER = 100 * (0 + 1 + 2) / (3 + 3 + 4) = 100 * 3 / 10 = 30.
  assert out['per'] == pytest.approx(30.0)
  # WER = 100 * 2 wrong items / 3 = 66.67; exact match = 100 / 3 = 33.33.
  assert out['wer'] == pytest.approx(200.0 / 3)
  assert out['exact_match'] == pytest.approx(100.0 / 3)
  assert out['num_items'] == 3


def test_error_rates_perfect_and_all_wrong():
  out = metrics.error_rates([['A'], ['B', 'C']], [[['A']], [['X'], ['B', 'C']]])
  assert (out['per'], out['wer'], out['exact_match']) == (0.0, 0.0, 100.0)
  # Both wrong: [] vs [A B] = 2, [Z] vs [Y] = 1 -> PER = 100 * 3 / 3 = 100, WER = 100.
  out = metrics.error_rates([[], ['Z']], [[['A', 'B']], [['Y']]])
  assert (out['per'], out['wer'], out['exact_match']) == (100.0, 100.0, 0.0)


def test_error_rates_empty_references():
  # All chosen references empty and all hypotheses empty: PER 0.
  assert metrics.error_rates([[]], [[[]]])['per'] == 0.0
  # Empty reference, hypothesis [A B]: 2 insertions / max(1, 0) -> PER = 200, WER = 100.
  out = metrics.error_rates([['A', 'B']], [[[]]])
  assert (out['per'], out['wer']) == (200.0, 100.0)


def test_error_rates_bad_input_raises():
  with pytest.raises(ValueError, match='2 hypotheses but 1'):
    metrics.error_rates([['A'], ['B']], [[['A']]])
  with pytest.raises(ValueError, match='item 1 has no reference'):
    metrics.error_rates([['A'], ['B']], [[['A']], []])
  with pytest.raises(ValueError, match='empty corpus'):
    metrics.error_rates([], [])


# --- bleu / chrf ---------------------------------------------------------------------------------

HYPS = ['the cat sat on the mat today', 'a small dog']
# Item 0 matches only its SECOND reference; item 1 has a single, longer reference.
VAR_REFS = [['the cat sat on a mat today', 'the cat sat on the mat today'],
            ['a small dog barks at night']]


@pytest.mark.parametrize('metric', [metrics.bleu, metrics.chrf])
def test_perfect_hypotheses_score_100(metric):
  hyps = ['the cat sat on the mat .', 'hello world']
  assert metric(hyps, [[h] for h in hyps]) == pytest.approx(100.0)
  # Extra non-matching references for some items do not lower a perfect score.
  assert metric(hyps, [[hyps[0], 'a dog'], [hyps[1]]]) == pytest.approx(100.0)


def test_bleu_variable_references_hand_value():
  # All hypothesis n-grams occur in the chosen references: every precision is 1. Closest reference
  # lengths 7 + 6 = 13 against hypothesis length 7 + 3 = 10: BP = exp(1 - 13/10) = exp(-0.3).
  assert metrics.bleu(HYPS, VAR_REFS) == pytest.approx(100 * math.exp(-0.3))  # 74.08


@pytest.mark.parametrize('metric', [metrics.bleu, metrics.chrf])
def test_second_reference_counts(metric):
  with_second = metric(HYPS, VAR_REFS)
  without_second = metric(HYPS, [VAR_REFS[0][:1], VAR_REFS[1]])
  assert with_second > without_second + 1.0


@pytest.mark.parametrize('metric,direct', [(metrics.bleu, sacrebleu.corpus_bleu),
                                           (metrics.chrf, sacrebleu.corpus_chrf)])
def test_padding_is_skipped_by_sacrebleu(metric, direct):
  # The padded slot of item 1 must be ignored: same score as repeating item 1's only reference
  # (a duplicate reference adds no n-grams and no new length).
  dup = direct(HYPS, [[VAR_REFS[0][0], VAR_REFS[1][0]], [VAR_REFS[0][1], VAR_REFS[1][0]]]).score
  assert metric(HYPS, VAR_REFS) == pytest.approx(dup)


def test_empty_string_is_not_a_missing_reference():
  # Why the streams are padded with None: sacrebleu keeps '' as a real empty reference. For item 1
  # (hypothesis length 3) the lengths 6 and 0 are equally close, sacrebleu takes the shorter, so the
  # brevity penalty vanishes and BLEU becomes 100 instead of 100 * exp(-0.3).
  streams = [[VAR_REFS[0][0], VAR_REFS[1][0]], [VAR_REFS[0][1], '']]
  assert sacrebleu.corpus_bleu(HYPS, streams).score == pytest.approx(100.0)
  streams[1][1] = None
  assert sacrebleu.corpus_bleu(HYPS, streams).score == pytest.approx(100 * math.exp(-0.3))


@pytest.mark.parametrize('metric,direct', [(metrics.bleu, sacrebleu.corpus_bleu),
                                           (metrics.chrf, sacrebleu.corpus_chrf)])
def test_single_reference_matches_sacrebleu(metric, direct):
  hyps = ['the quick brown fox jumps over a lazy dog', 'it is raining today']
  refs = ['the quick brown fox jumped over the lazy dog', 'it rains today']
  expected = direct(hyps, [refs]).score
  assert 0.0 < expected < 100.0
  assert metric(hyps, [[r] for r in refs]) == pytest.approx(expected)


@pytest.mark.parametrize('metric', [metrics.bleu, metrics.chrf])
def test_bleu_chrf_bad_input_raises(metric):
  with pytest.raises(ValueError, match='2 hypotheses but 1'):
    metric(['a', 'b'], [['a']])
  with pytest.raises(ValueError, match='item 0 has no reference'):
    metric(['a'], [[]])
