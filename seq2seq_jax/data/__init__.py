"""Data: where a split's text comes from (built-in tasks, CMUdict, TFDS translation, the user's TSV files),
vocabularies (symbols <-> ids), and padded, length-bucketed batches (grain).

May import: `errors` only. Nothing here knows about models, decoding or training.
"""
