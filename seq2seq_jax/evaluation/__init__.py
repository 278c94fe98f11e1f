"""Evaluation: metrics (edit distance, PER/WER, BLEU/chrF), teacher-forced and decoded evaluation of a model
on pairs, and attention heatmaps.

May import: `decoding`, `runs`, `config`, `model`, `data`, `errors`. Never imports training.
"""
