"""Evaluation metrics: edit distance, G2P phoneme/word error rates, corpus BLEU and chrF.

Every item may have several references. PER/WER follow the G2P literature: each hypothesis is scored
against its closest reference. BLEU/chrF are delegated to sacrebleu, see `_reference_streams`.
"""

from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF


def edit_distance(hyp: Sequence[str], ref: Sequence[str]) -> int:
  """Levenshtein distance between two symbol sequences (substitution, insertion, deletion cost 1)."""
  if len(hyp) < len(ref):
    hyp, ref = ref, hyp  # The distance is symmetric; keep the rolling row the shorter one.
  row = list(range(len(ref) + 1))
  for i, h in enumerate(hyp, start=1):
    diag, row[0] = row[0], i
    for j, r in enumerate(ref, start=1):
      best = diag if h == r else diag + 1  # match / substitution
      if row[j] + 1 < best:  # deletion of h
        best = row[j] + 1
      if row[j - 1] + 1 < best:  # insertion of r
        best = row[j - 1] + 1
      diag, row[j] = row[j], best
  return row[-1]


def closest_reference(hyp: Sequence[str], refs: Sequence[Sequence[str]]) -> tuple[int, int]:
  """Returns (distance, reference length) of the reference closest to `hyp` in edit distance.

  Ties go to the first such reference in the given order. Raises ValueError if `refs` is empty.
  """
  if len(refs) == 0:
    raise ValueError('closest_reference: `refs` is empty; every item needs at least one reference')
  best: tuple[int, int] | None = None
  for ref in refs:
    dist = edit_distance(hyp, ref)
    if best is None or dist < best[0]:
      best = (dist, len(ref))
      if dist == 0:
        break  # Nothing can beat an exact match, and later ties lose to it anyway.
  assert best is not None
  return best


def _check_corpus(name: str, hyps: Sequence, refs: Sequence) -> None:
  """Raises ValueError unless hyps/refs are non-empty, equally long and every item has a reference."""
  if len(hyps) != len(refs):
    raise ValueError(f'{name}: {len(hyps)} hypotheses but {len(refs)} reference lists')
  if len(hyps) == 0:
    raise ValueError(f'{name}: empty corpus (no hypotheses)')
  for i, item_refs in enumerate(refs):
    if len(item_refs) == 0:
      raise ValueError(f'{name}: item {i} has no reference')


def error_rates(hyps: Sequence[Sequence[str]],
                refs: Sequence[Sequence[Sequence[str]]]) -> dict[str, float]:
  """Corpus PER/WER (in %) of symbol sequences, each item scored against its closest reference.

  Returns:
    'per': 100 * sum of closest-reference distances / sum of those references' lengths (pooled);
      if all chosen references are empty the denominator is taken as max(1, total length), so PER is 0
      when every hypothesis is empty too and 100 * sum(distances) otherwise.
    'wer': 100 * share of items whose closest reference is not matched exactly.
    'exact_match': 100 - wer.
    'num_items': number of items (as a float).
  Raises ValueError if the lengths differ, the corpus is empty or an item has no reference.
  """
  _check_corpus('error_rates', hyps, refs)
  total_dist = total_len = num_wrong = 0
  for hyp, item_refs in zip(hyps, refs):
    dist, ref_len = closest_reference(hyp, item_refs)
    total_dist += dist
    total_len += ref_len
    num_wrong += dist > 0
  wer = 100.0 * num_wrong / len(hyps)
  return {
      'per': 100.0 * total_dist / max(1, total_len),
      'wer': wer,
      'exact_match': 100.0 - wer,
      'num_items': float(len(hyps)),
  }


def _reference_streams(hyps: Sequence[str], refs: Sequence[Sequence[str]],
                       name: str) -> list[list[str | None]]:
  """Turns per-item reference lists into sacrebleu's equally long reference streams.

  Stream k holds the k-th reference of every item, padded with None for items with fewer references.
  sacrebleu (2.6, `Metric._cache_references`) drops None entries per segment, so a padded slot is
  ignored. An empty string would NOT be dropped: it counts as a real empty reference (for BLEU it can
  become the "closest" reference length and cancel the brevity penalty), hence None, never ''.
  The first stream is always complete, which sacrebleu's type check on refs[0][0] requires.
  """
  _check_corpus(name, hyps, refs)
  num_streams = max(len(item_refs) for item_refs in refs)
  return [[item_refs[k] if k < len(item_refs) else None for item_refs in refs]
          for k in range(num_streams)]


def bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
  """Corpus BLEU (0..100, sacrebleu defaults: 13a tokenizer, exp smoothing) of detokenized strings.

  refs[i] holds the references of item i (one or more; the count may vary between items).
  """
  streams = _reference_streams(hyps, refs, 'bleu')
  return float(BLEU().corpus_score(list(hyps), streams).score)


def chrf(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
  """Corpus chrF (0..100, sacrebleu defaults: chrF2, character 6-grams) of detokenized strings.

  refs[i] holds the references of item i (one or more; the count may vary between items).
  """
  streams = _reference_streams(hyps, refs, 'chrf')
  return float(CHRF().corpus_score(list(hyps), streams).score)


ROUGE_TYPES = ('rouge1', 'rouge2', 'rougeL')


def rouge(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
  """Mean ROUGE-1, ROUGE-2 and ROUGE-L F1 (0..100) of detokenized strings (the rouge-score package: its
  default tokenizer lower-cases and keeps runs of a-z0-9, with the Porter stemmer, as in summarization work).
  An item with several references takes its best score against any of them, per ROUGE type."""
  from rouge_score import rouge_scorer
  _check_corpus('rouge', hyps, refs)
  scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
  totals = dict.fromkeys(ROUGE_TYPES, 0.0)
  for hyp, item_refs in zip(hyps, refs):
    scores = scorer.score_multi(list(item_refs), hyp)
    for kind in ROUGE_TYPES:
      totals[kind] += scores[kind].fmeasure
  return {kind: 100.0 * total / len(hyps) for kind, total in totals.items()}
