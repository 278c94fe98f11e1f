"""Attention heatmaps as PNG files, drawn on matplotlib's Agg canvas (no display, no pyplot state).

  plot_attention(weights_TxS, ['a', 'b', '</s>'], ['b', 'a', '</s>'], 'attention.png')
  write_attention_pngs(predictor, ['abc', 'hello'], 'DIR', 'step1000')  # DIR/step1000-1.png, DIR/step1000-2.png

Source tokens run along x, output tokens down y, both ending with EOS; a cell's shade is the weight the
output token (row) gave to the source token (column). Every token gets a fixed-size cell, so the image size
follows from the lengths (`image_size`). A pointer-generator's plot has one more column, right of the source,
labelled p_gen: each output step's probability of generating (1 − p_gen: of copying), from the model's own
output fed back teacher-forced.
"""

import os
from typing import Sequence

import numpy as np

from seq2seq_jax.data.vocab import EOS, SPECIALS
from seq2seq_jax.errors import WorkdirError

DPI = 100
CELL_IN = 0.3          # inches per token
MARGINS_IN = (1.6, 1.1)  # room for labels and the colour bar, in inches (width, height)
MAX_IN = 60.0          # largest side, in inches


def figure_size(num_source: int, num_target: int) -> tuple[float, float]:
  """Figure (width, height) in inches for a heatmap of num_target rows and num_source columns."""
  width = min(MAX_IN, max(3.0, MARGINS_IN[0] + CELL_IN * num_source))
  height = min(MAX_IN, max(2.5, MARGINS_IN[1] + CELL_IN * num_target))
  return width, height


def image_size(num_source: int, num_target: int) -> tuple[int, int]:
  """The PNG's (width, height) in pixels."""
  width, height = figure_size(num_source, num_target)
  return round(width * DPI), round(height * DPI)


def _label(token: str) -> str:
  return token.replace(' ', '\u2423') if token.strip() else '\u2423' * max(len(token), 1)


P_GEN = 'p_gen'


def plot_attention(weights_TxS, source_tokens: Sequence[str], target_tokens: Sequence[str], path: str,
                   title: str | None = None, p_gen_T=None) -> str:
  """Writes the heatmap of `weights_TxS` (T = len(target_tokens), S = len(source_tokens)) to `path` (PNG),
  with `p_gen_T` (a copy model's p_gen per output token) as one more column."""
  from matplotlib.figure import Figure
  weights_TxS = np.asarray(weights_TxS, np.float32)
  if weights_TxS.shape != (len(target_tokens), len(source_tokens)):
    raise ValueError(f'attention of shape {weights_TxS.shape} for {len(target_tokens)} output and '
                     f'{len(source_tokens)} source tokens')
  if p_gen_T is not None:
    weights_TxS = np.concatenate([weights_TxS, np.asarray(p_gen_T, np.float32).reshape(-1, 1)], 1)
    source_tokens = list(source_tokens) + [P_GEN]
  fig = Figure(figsize=figure_size(len(source_tokens), len(target_tokens)), dpi=DPI, layout='constrained')
  ax = fig.add_subplot()
  image = ax.imshow(weights_TxS, cmap='viridis', vmin=0.0, vmax=1.0, aspect='auto', interpolation='nearest')
  ax.set_xticks(range(len(source_tokens)), [_label(t) for t in source_tokens], rotation=90)
  ax.set_yticks(range(len(target_tokens)), [_label(t) for t in target_tokens])
  ax.set_xlabel('source')
  ax.set_ylabel('output')
  if title:
    ax.set_title(title, fontsize='small')
  fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
  fig.savefig(path, dpi=DPI, format='png')
  return path


def plot_texts(predictor, texts: list[str], paths: Sequence[str], where: str = 'input',
               lenient: bool = False) -> list[str]:
  """Greedy-decodes the texts (encoded as `predictor.encode_texts(texts, where, lenient)`) and writes one
  heatmap per text to its path. Source labels are the symbols the encoder reads (<unk> for unknown ones),
  or for a copy model the source's own symbols (those it can copy)."""
  results = predictor.decode_texts(texts, where, lenient=lenient)
  gates = [None] * len(texts)
  if predictor.copies and not predictor.is_ensemble:
    gates = predictor.p_gen(texts, results)
  src_symbols = predictor.src_vocab.symbols
  for text, ids, result, p_gen, path in zip(texts, predictor.encode_texts(texts, where, lenient), results, gates,
                                            paths, strict=True):
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    source = predictor.src_vocab.split(text) if predictor.copies else [src_symbols[i] for i in ids]
    plot_attention(result['attention'], source + [SPECIALS[EOS]], result['symbols'] + [SPECIALS[EOS]], path,
                   p_gen_T=p_gen)
  return list(paths)


def write_attention_pngs(predictor, sources: list[str], folder: str, prefix: str) -> list[str]:
  """Writes FOLDER/PREFIX-1.png, FOLDER/PREFIX-2.png, ... (one per source text, greedy decoding); unknown
  symbols are read as <unk>. Returns the paths."""
  paths = [os.path.join(folder, f'{prefix}-{i + 1}.png') for i in range(len(sources))]
  return plot_texts(predictor, sources, paths, lenient=True)


def check_output(path: str) -> None:
  """WorkdirError unless a PNG can be written at `path` (checked before any decoding): not a directory, and its
  folder is one or can be made."""
  full = os.path.abspath(path)
  if os.path.isdir(full):
    raise WorkdirError(f'--output {path}: is a directory, expected a file name such as '
                       f'{os.path.join(path, "attention.png")}')
  existing = os.path.dirname(full)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise WorkdirError(f'--output {path}: cannot be created: {existing} is a file')
  if not os.access(existing, os.W_OK | os.X_OK) or os.statvfs(existing).f_flag & os.ST_RDONLY:
    raise WorkdirError(f'--output {path}: {existing} is not writable')
