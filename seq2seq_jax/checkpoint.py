"""Orbax checkpoints of the train state, with the data iterator's position and run metadata beside it.

Each step directory holds three items: `state` (TrainState: step, params, optimizer state, PRNG key),
`data` (the grain iterator state, JSON) and `meta` (JSON: validation metrics at that step, vocabulary
fingerprints). Orbax writes a step into a temporary directory and renames it when complete, so a checkpoint
cut short by a crash is never listed and never loaded. Kept: the last `keep` steps plus the best one by the
task's validation metric. Averaged parameters (`average`) go to DIR/averaged/ under the newest step averaged.
"""

import hashlib
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from seq2seq_jax.errors import CheckpointError

ITEMS = ('state', 'data', 'meta')


def fingerprint(params) -> str:
  """SHA-256 over every parameter's path, dtype, shape and bytes: equal iff bitwise-equal parameters."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    x = np.ascontiguousarray(np.asarray(leaf))
    h.update(f'{jax.tree_util.keystr(path)}:{x.dtype}:{x.shape};'.encode())
    h.update(x.tobytes())
  return h.hexdigest()[:16]


class Checkpointer:
  """Saves and restores `TrainState` pytrees in `workdir/checkpoints` (or `workdir/averaged`)."""

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

  def save(self, step: int, state, data: dict, meta: dict, metric: str = '', mode: str = 'min') -> None:
    """Saves `step`, then deletes what is neither among the last `keep` nor the best by `metric`."""
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    data=ocp.args.JsonSave(data), meta=ocp.args.JsonSave(meta)),
                      force=True)
    self.manager.wait_until_finished()
    steps = self.all_steps()
    keep = set(steps[-self.keep:])
    if metric:
      best = self.best_step(metric, mode)
      keep.add(best if best is not None else steps[-1])
    for old in steps:
      if old not in keep:
        self.manager.delete(old)

  def restore(self, step: int, like_state) -> tuple:
    """Restores `step` into the structure, shapes and dtypes of `like_state`; returns (state, data, meta)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                               data=ocp.args.JsonRestore(),
                                                               meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as e:
      first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
      raise CheckpointError(f'{self.directory}/{step}: does not fit this config ({first[:300]})') from e
    _check_fits(out['state'], like_state, f'{self.directory}/{step}')
    return out['state'], out['data'], out['meta']

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


def average_params(states: list) -> object:
  """Element-wise mean of the `params` of several train states (float32 accumulation)."""
  return jax.tree.map(lambda *xs: (sum(np.asarray(x, np.float64) for x in xs) / len(xs)).astype(xs[0].dtype),
                      *[s.params for s in states])
