"""Where training metrics go: `metrics.jsonl` (one JSON object per line) and TensorBoard event files.

TensorBoard files are written with tensorboardX, which needs no TensorFlow.
"""

import json
import os

import tensorboardX


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

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()
