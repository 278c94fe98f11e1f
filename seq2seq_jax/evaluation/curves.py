"""Training curves as a PNG, from a run's metrics.jsonl: training loss and the validation metric against the step.

  seq2seq-jax plot-metrics --workdir DIR [--output FILE]   # DIR/metrics.png by default
  write_png('DIR/metrics.jsonl', 'DIR/metrics.png')        # what training does when it ends

The validation metric is the task metric that picks the best checkpoint; training names it in every validation
row (`best_<metric>`). Learning-rate reductions (`plateau` rows) are dotted lines, early stopping (`early_stop`)
a dashed one, the best evaluation a star. Drawn on matplotlib's Agg canvas (no display, no pyplot state).
"""

import json
import numbers
import os

from seq2seq_jax.errors import DataError

SIZE_IN = (8.0, 6.0)
DPI = 100


def _number(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def read_rows(path: str) -> list[dict]:
  """The rows of a metrics.jsonl file; a line that is not a JSON object with an integer `step`, a `kind` and (in
  train and validation rows) numbers where numbers belong is a DataError naming the file and line."""
  try:
    with open(path, 'rb') as f:
      lines = f.read().split(b'\n')
  except FileNotFoundError:
    raise DataError(f'{path}: no such file (a training workdir has one)') from None
  except IsADirectoryError:
    raise DataError(f'{path}: is a directory, not a metrics.jsonl file') from None
  rows = []
  for n, raw in enumerate(lines, 1):
    if not raw.strip():
      continue
    try:
      row = json.loads(raw.decode('utf-8'))
    except UnicodeDecodeError as e:
      raise DataError(f'{path}:{n}: not UTF-8 (byte {e.start})') from None
    except ValueError as e:
      raise DataError(f'{path}:{n}: not a JSON line ({getattr(e, "msg", e)})') from None
    if not isinstance(row, dict):
      raise DataError(f'{path}:{n}: not a JSON object')
    if not isinstance(row.get('step'), int) or isinstance(row['step'], bool) or not isinstance(row.get('kind'), str):
      raise DataError(f'{path}:{n}: a row needs an integer "step" and a "kind"')
    if row['kind'] == 'train' and not _number(row.get('loss')):
      raise DataError(f'{path}:{n}: a train row without a numeric "loss"')
    if row['kind'] == 'validation':  # best_step, best_<metric> and <metric> are what the plot reads
      names = [k for k in row if k.startswith('best_')]
      bad = [k for k in names + [k[len('best_'):] for k in names if k != 'best_step'] if not _number(row.get(k))]
      if bad:
        raise DataError(f'{path}:{n}: a validation row whose "{bad[0]}" is not a number')
    rows.append(row)
  return rows


def task_metric(rows: list[dict]) -> str | None:
  """The metric that training tracked as best (`best_<metric>` in its validation rows), or None."""
  for row in rows:
    if row['kind'] == 'validation':
      names = [k[len('best_'):] for k in row if k.startswith('best_') and k != 'best_step']
      if names:
        return names[0]
  return None


def write_png(metrics_path: str, output: str, title: str | None = None) -> str:
  """Draws the curves of `metrics_path` into the PNG file `output` (its folder is made); returns `output`."""
  from matplotlib.figure import Figure
  rows = read_rows(metrics_path)
  train = sorted((r['step'], r['loss']) for r in rows if r['kind'] == 'train')
  metric = task_metric(rows)
  validation = sorted((r['step'], r[metric]) for r in rows if r['kind'] == 'validation' and _number(r.get(metric)))
  if not train and not validation:
    raise DataError(f'{metrics_path}: no train or validation rows to plot')
  fig = Figure(figsize=SIZE_IN, dpi=DPI, layout='constrained')
  axes = fig.subplots(2 if validation else 1, 1, sharex=True, squeeze=False)[:, 0]
  fig.suptitle(title or metrics_path, fontsize='small')
  if train:
    axes[0].plot(*zip(*train), color='tab:blue', linewidth=1.2)
  axes[0].set_ylabel('training loss')
  if validation:
    ax = axes[1]
    ax.plot(*zip(*validation), color='tab:orange', marker='o', markersize=3, linewidth=1.2)
    best = [(r['best_step'], r[f'best_{metric}']) for r in rows if r['kind'] == 'validation' and 'best_step' in r]
    if best:
      ax.plot(*best[-1], marker='*', markersize=12, color='tab:red', linestyle='none',
              label=f'best {metric} {best[-1][1]:.4g} (step {best[-1][0]})')
      ax.legend(fontsize='small')
    ax.set_ylabel(f'validation {metric}')
  marks = {'plateau': (':', 'learning rate reduced'), 'early_stop': ('--', 'early stop')}
  labelled = set()
  for row in rows:
    if row['kind'] not in marks:
      continue
    style, label = marks[row['kind']]
    for ax in axes:  # the legend (top panel) names each kind of line once
      ax.axvline(row['step'], color='gray', linestyle=style, linewidth=1,
                 label=label if ax is axes[0] and row['kind'] not in labelled else None)
    labelled.add(row['kind'])
  if labelled:
    axes[0].legend(fontsize='small')
  axes[-1].set_xlabel('step')
  for ax in axes:
    ax.grid(alpha=0.3)
  os.makedirs(os.path.dirname(output) or '.', exist_ok=True)
  fig.savefig(output, dpi=DPI, format='png')
  return output
