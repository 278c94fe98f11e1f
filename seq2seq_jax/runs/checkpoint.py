"""Orbax checkpoints: parameters, the rest of the train state, the data iterator's position and run metadata.

Each step directory holds up to four items: `params` (the model's parameters), `train` (the rest of the
train state: step, optimizer state, PRNG key), `data` (the grain iterator state, JSON) and `meta` (JSON:
validation metrics at that step, vocabulary fingerprints). Inference reads `params` and `meta` only; an
averaged checkpoint has nothing else. Orbax writes a step into a temporary directory and renames it when complete, so a checkpoint
cut short by a crash is never listed and never loaded. Kept: the last `keep` steps plus the best one by the
task's validation metric. Averaged parameters (`average`) go to DIR/averaged/ under the newest step averaged.
"""

import hashlib
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from seq2seq_jax.errors import CheckpointError

ITEMS = ('params', 'train', 'data', 'meta')


def fingerprint(params) -> str:
  """SHA-256 over every parameter's path, dtype, shape and bytes: equal iff bitwise-equal parameters."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    x = np.ascontiguousarray(np.asarray(leaf))
    h.update(f'{jax.tree_util.keystr(path)}:{x.dtype}:{x.shape};'.encode())
    h.update(x.tobytes())
  return h.hexdigest()[:16]


class Checkpointer:
  """Saves and restores parameter and train-state pytrees in `workdir/checkpoints` (or `workdir/averaged`)."""

  def __init__(self, workdir: str, keep: int = 3, read_only: bool = False, folder: str = 'checkpoints'):
    self.directory = os.path.abspath(os.path.join(workdir, folder))
    self.keep = keep
    if read_only and not os.path.isdir(self.directory):
      raise CheckpointError(f'{workdir}: has no {folder}/ directory')
    self.manager = ocp.CheckpointManager(
        self.directory, item_names=ITEMS,
        options=ocp.CheckpointManagerOptions(max_to_keep=None, create=not read_only, read_only=read_only,
                                             enable_async_checkpointing=False))

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']

  def best_step(self, metric: str, mode: str) -> int | None:
    """The step whose saved validation `metric` is best; None when no checkpoint has one."""
    scored = [(m['validation'][metric], s) for s in self.all_steps()
              if metric in (m := self.meta(s)).get('validation', {})]
    if not scored:
      return None
    return (min if mode == 'min' else max)(scored, key=lambda vs: (vs[0], -vs[1]))[1]

  def resolve(self, step: str | int, metric: str, mode: str) -> int:
    """'latest', 'best' (falls back to latest when nothing was evaluated) or a step number -> a saved step."""
    steps = self.all_steps()
    if not steps:
      raise CheckpointError(f'{self.directory}: has no complete checkpoint')
    if step == 'latest':
      return steps[-1]
    if step == 'best':
      best = self.best_step(metric, mode)
      return steps[-1] if best is None else best
    if str(step).isdigit() and int(step) in steps:
      return int(step)
    raise CheckpointError(f'{self.directory}: no checkpoint at step {step!r}; saved steps: '
                          f'{", ".join(map(str, steps))}')

  def save(self, step: int, params, train=None, data: dict | None = None, meta: dict | None = None,
           metric: str = '', mode: str = 'min') -> None:
    """Saves `step` (`train` and `data` only when given), then deletes what is neither among the last `keep`
    nor the best by `metric`."""
    items = {'params': ocp.args.StandardSave(params), 'meta': ocp.args.JsonSave(meta or {})}
    if train is not None:
      items['train'] = ocp.args.StandardSave(train)
    if data is not None:
      items['data'] = ocp.args.JsonSave(data)
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)
    self.manager.wait_until_finished()
    steps = self.all_steps()
    keep = set(steps[-self.keep:])
    if metric:
      best = self.best_step(metric, mode)
      keep.add(best if best is not None else steps[-1])
    for old in steps:
      if old not in keep:
        self.manager.delete(old)

  def restore(self, step: int, like_params, like_train=None) -> dict:
    """Restores `step` into the structure, shapes and dtypes of `like_params` (and of `like_train` with the
    data iterator's state when given). Returns {'params', 'meta'[, 'train', 'data']}."""
    items = {'params': ocp.args.StandardRestore(_abstract(like_params)), 'meta': ocp.args.JsonRestore()}
    if like_train is not None:
      items.update(train=ocp.args.StandardRestore(_abstract(like_train)), data=ocp.args.JsonRestore())
    try:
      out = dict(self.manager.restore(step, args=ocp.args.Composite(**items)))
    except (ValueError, KeyError, TypeError) as e:
      first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
      raise CheckpointError(f'{self.directory}/{step}: does not fit this config ({first[:300]})') from e
    _check_fits(out['params'], like_params, f'{self.directory}/{step}')
    if like_train is not None:
      _check_fits(out['train'], like_train, f'{self.directory}/{step}')
    return out

  def close(self) -> None:
    self.manager.close()


def _check_fits(restored, like, where: str) -> None:
  """Orbax restores what was saved even when the target's shapes differ: compare them ourselves."""
  got = jax.tree_util.tree_flatten_with_path(restored)[0]
  want = jax.tree_util.tree_flatten_with_path(like)[0]
  if len(got) != len(want):
    raise CheckpointError(f'{where}: does not fit this config ({len(got)} arrays saved, {len(want)} expected)')
  for (path, a), (_, b) in zip(got, want):
    if np.shape(a) != np.shape(b) or np.asarray(a).dtype != b.dtype:
      raise CheckpointError(f'{where}: does not fit this config ({jax.tree_util.keystr(path)} is '
                            f'{np.asarray(a).dtype}{list(np.shape(a))} there, {b.dtype}{list(b.shape)} here)')


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def average_params(params: list) -> object:
  """Element-wise mean of several parameter trees (float64 accumulation)."""
  return jax.tree.map(lambda *xs: (sum(np.asarray(x, np.float64) for x in xs) / len(xs)).astype(xs[0].dtype),
                      *params)
