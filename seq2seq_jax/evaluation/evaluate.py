"""Evaluation of a model on (source, target) pairs: teacher-forced loss and accuracy, and decoded metrics.

Decoded metrics compare the output (greedy by default) of every distinct source with all its references:
exact_match, per / wer (symbol-level, closest reference; see metrics.py), BLEU / chrF for translation, and
ROUGE-1/2/L with data.metric=rouge.
"""

import functools

import jax

from seq2seq_jax.data import pipeline, sources as sources_lib
from seq2seq_jax.decoding import DecodeOptions
from seq2seq_jax.evaluation import metrics
from seq2seq_jax.model import losses


def eval_step(params, batch: dict, *, model, axis_name=None) -> dict:
  """Teacher-forced sums: loss, correct tokens, tokens, fully correct sequences, sequences."""
  logits, _ = model.apply({'params': params}, batch['src'], batch['src_len'], batch['tgt_in'],
                          src_ext_BxS=batch.get('src_ext'))
  loss_sum, _ = losses.cross_entropy(logits, batch['tgt_out'], batch['weights'])
  sums = {'loss_sum': loss_sum, **losses.token_counts(logits, batch['tgt_out'], batch['weights'])}
  return jax.lax.psum(sums, axis_name) if axis_name else sums


_jitted_eval_step = jax.jit(eval_step, static_argnames=('model', 'axis_name'))


def teacher_forced(predictor, examples: pipeline.Examples) -> dict:
  """Loss per target token (EOS included) and token accuracy under teacher forcing."""
  step = functools.partial(_jitted_eval_step, model=predictor.model)
  totals = None
  for batch in pipeline.eval_batches(examples, predictor.cfg.decode.batch_size):
    batch.pop('index')
    out = step(predictor.params, batch)
    totals = out if totals is None else jax.tree.map(lambda a, b: a + b, totals, out)
  totals = jax.tree.map(float, totals)
  return {'loss': totals['loss_sum'] / max(totals['tokens'], 1.0),
          'token_accuracy': 100.0 * totals['correct'] / max(totals['tokens'], 1.0)}


def score(predictor, hyp_symbols: list[list[str]], references: list[tuple[str, list[str]]],
          translation: bool = False) -> dict:
  """PER/WER/exact match (and BLEU/chrF for translation, ROUGE with data.metric=rouge) of output symbols
  (`Predictor.symbols`) against each item's references."""
  tgt_vocab = predictor.tgt_vocab
  ref_symbols = [[tgt_vocab.split(r) for r in refs] for _, refs in references]
  out = metrics.error_rates(hyp_symbols, ref_symbols)
  hyp_text = [tgt_vocab.join(h) for h in hyp_symbols]
  ref_text = [refs for _, refs in references]
  if translation:
    out['bleu'] = metrics.bleu(hyp_text, ref_text)
    out['chrf'] = metrics.chrf(hyp_text, ref_text)
  if predictor.cfg.data.metric == 'rouge':
    out.update(metrics.rouge(hyp_text, ref_text))
  out['num_items'] = int(out['num_items'])
  return out


def decode_sources(predictor, references: list[tuple[str, list[str]]], options: DecodeOptions | None = None,
                   prefixes: tuple[str, list[str]] | None = None) -> list[dict]:
  """`predictor.decode_texts` of each reference item's source (unknown source symbols read as UNK); `prefixes`:
  (where, lines), one forced output prefix per item (see `Predictor.encode_prefixes`)."""
  where, lines = prefixes or ('prefixes', None)
  return predictor.decode_texts([s for s, _ in references], 'eval', options, lenient=True, prefixes=lines,
                                prefix_where=where)


def decoded(predictor, references: list[tuple[str, list[str]]], translation: bool = False,
            options: DecodeOptions | None = None, prefixes: tuple[str, list[str]] | None = None) -> dict:
  """Decodes each source (greedily unless `options` say otherwise; `prefixes` as `decode_sources`') and scores
  its best output against its references (percentages)."""
  results = decode_sources(predictor, references, options, prefixes)
  return score(predictor, [r['symbols'] for r in results], references, translation)


def evaluate(predictor, pairs, max_items: int = 0, options: DecodeOptions | None = None,
             prefixes: tuple[str, list[str]] | None = None) -> dict:
  """All metrics on `pairs` ((source, target, where) triples); `max_items` > 0 keeps the first sources only;
  `options` set how the decoded metrics decode (default: greedy), `prefixes` one forced output prefix per
  distinct source, in order of first appearance (see `decode_sources`). An ensemble has decoded metrics only
  (its teacher-forced loss is not defined here)."""
  references = sources_lib.group_references(pairs)
  if max_items:
    references = references[:max_items]
    keep = {s for s, _ in references}
    pairs = [p for p in pairs if p[0] in keep]
  result = {}
  if not predictor.is_ensemble:
    examples, _, _ = sources_lib.encode(predictor.cfg, pairs, predictor.src_vocab, predictor.tgt_vocab)
    result = teacher_forced(predictor, examples)
  result.update(decoded(predictor, references, translation=predictor.cfg.data.task == 'tfds', options=options,
                        prefixes=prefixes))
  return result
