"""Where training metrics go: `metrics.jsonl` (one JSON object per line) and TensorBoard event files.

TensorBoard files are written with tensorboardX, which needs no TensorFlow; images (the attention heatmaps of
each evaluation) go there too, beside their PNG files.
"""

import json
import os

import numpy as np
import tensorboardX
from PIL import Image

from seq2seq_jax.runs import workdir as workdir_lib


def keep_rows_until(path: str, step: int) -> tuple[int, int]:
  """Rewrites metrics.jsonl without the rows logged after `step` (an interrupted run logged them after its last
  checkpoint; the resumed run logs them again) and without damaged lines (a write cut short by a full disk).
  Returns (rows dropped as later, damaged lines dropped)."""
  if not os.path.isfile(path):
    return 0, 0
  with open(path, encoding='utf-8', errors='replace') as f:
    lines = f.read().splitlines()
  kept, later, damaged = [], 0, 0
  for line in lines:
    try:
      row = json.loads(line)
      row_step = int(row['step'])
    except (ValueError, TypeError, KeyError):
      damaged += 1
      continue
    if row_step > step:
      later += 1
    else:
      kept.append(line)
  if later or damaged:
    workdir_lib.write_atomic(path, ''.join(line + '\n' for line in kept))
  return later, damaged


class MetricWriter:
  """Appends `{"step": s, "kind": k, ...}` lines to DIR/metrics.jsonl and scalars to DIR/tensorboard."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    if enabled:
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8')
      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, kind: str, values: dict) -> None:
    if not self.enabled:
      return
    self._jsonl.write(json.dumps({'step': int(step), 'kind': kind, **values}, sort_keys=True) + '\n')
    self._jsonl.flush()
    for name, value in values.items():
      if isinstance(value, (int, float)):
        self._tb.add_scalar(f'{kind}/{name}', value, int(step))
    self._tb.flush()

  def images(self, step: int, kind: str, paths: list[str]) -> None:
    """The PNG files at `paths` as TensorBoard images `kind/1`, `kind/2`, ... at `step` (the slider of the
    Images tab walks through the evaluations)."""
    if not self.enabled:
      return
    for i, path in enumerate(paths, 1):
      with Image.open(path) as image:
        rgb_HxWx3 = np.asarray(image.convert('RGB'))
      self._tb.add_image(f'{kind}/{i}', rgb_HxWx3, int(step), dataformats='HWC')
    self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()
