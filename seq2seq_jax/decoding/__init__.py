"""Decoding: greedy, sampling and beam search as `lax.while_loop`s over pure `encode` / `step` functions
(fns.py), the decoding controls they all apply at every step (controls.py), ensembles (ensemble.py), the choice
among them (search.py), and text in / text out around them (predictor.py).

May import: `model`, `data` (vocabulary ids, padding), `runs` (to load a trained model), `config`, `errors`.
Never imports training.
"""

from seq2seq_jax.decoding.predictor import Predictor  # noqa: F401
from seq2seq_jax.decoding.search import DecodeOptions  # noqa: F401
