"""Orbax checkpoints: parameters, the rest of the train state, the data iterator's position, metadata, checksums.

Each step directory holds up to five items: `params` (the model's parameters), `train` (the rest of the train
state: step, optimizer state, PRNG key), `data` (the grain iterator state, JSON), `meta` (JSON: validation
metrics at that step, vocabulary fingerprints) and `checksums` (JSON). Inference reads `params`, `meta` and
`checksums` only; an averaged checkpoint has nothing else. Kept: the last `keep` steps plus the best one by the
task's validation metric. Averaged parameters (`average`) go to DIR/averaged/ under the newest step averaged.

Integrity. `checksums` records, for every array of `params` and `train`, its dtype, shape and the SHA-256 of its
bytes; the SHA-256 of the `data` and `meta` JSON; and the SHA-256 of all that (so a change inside `checksums`
itself is seen too). Every restore checks them all, for training and inference alike: a checkpoint whose files
changed after the save (flipped bits, a truncated or missing file or item) raises `CheckpointDamaged`, never
loads other numbers. The recorded shapes tell "does not fit this config" (another model) apart from "damaged".
Checkpoints written before checksums existed (no `checksums` item) load as before, unverified.

Atomicity. Orbax writes a step into a temporary directory and renames it when complete, so a checkpoint cut
short by a crash (or a full disk: the partial save is removed) is never listed. Deleting a step renames it to
a hidden name first, so a reader (`eval` while `train` runs) sees a step whole or not at all; a step deleted
while it is being read raises `CheckpointGone`, and the reader chooses again. A damaged step is moved aside to
`N.damaged` (`quarantine`), never deleted.
"""

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from seq2seq_jax.errors import CheckpointDamaged, CheckpointError, WorkdirError
from seq2seq_jax.runs import integrity

ITEMS = ('params', 'train', 'data', 'meta', 'checksums')
TMP_MARK = '.orbax-checkpoint-tmp'  # orbax's name for a step being written
DELETING = '.deleting-'             # our name for a step being deleted
DAMAGED = '.damaged'                # our name for a damaged step moved aside


class CheckpointGone(CheckpointError):
  """The step was deleted (by the training run that owns it) while it was being read."""


def fingerprint(params) -> str:
  """SHA-256 over every parameter's path, dtype, shape and bytes: equal iff bitwise-equal parameters."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    x = np.ascontiguousarray(np.asarray(leaf))
    h.update(f'{jax.tree_util.keystr(path)}:{x.dtype}:{x.shape};'.encode())
    h.update(x.tobytes())
  return h.hexdigest()[:16]


def _complete_steps(directory: str) -> list[int]:
  try:
    names = os.listdir(directory)
  except FileNotFoundError:
    return []
  return sorted(int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def saved_steps(workdir: str) -> list[int]:
  """The complete checkpoints of a workdir (none when it does not exist), without opening orbax."""
  return _complete_steps(os.path.join(workdir, 'checkpoints'))


class Checkpointer:
  """Saves, verifies and restores parameter and train-state pytrees in `workdir/checkpoints` (or
  `workdir/averaged`). `warn` receives one-line warnings (a damaged old checkpoint moved aside)."""

  def __init__(self, workdir: str, keep: int = 3, read_only: bool = False, folder: str = 'checkpoints',
               warn=None):
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, folder))
    self.keep = keep
    self.warn = warn or (lambda message: print(message, file=sys.stderr, flush=True))
    if read_only and not os.path.isdir(self.directory):
      raise CheckpointError(f'{workdir}: has no {folder}/ directory')
    integrity.quiet_background_errors()
    # Saving is collective (every process of a run calls it; orbax synchronises them). Reading goes through a
    # manager of this process alone: no barriers, so processes may read different steps or a different number
    # of them (a damaged step, a meta read by process 0 only) without waiting for each other forever.
    self.manager = None if read_only else ocp.CheckpointManager(
        self.directory, item_names=ITEMS,
        options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True, enable_async_checkpointing=False))
    here = jax.process_index()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None, read_only=True, enable_async_checkpointing=False,
        multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=here, active_processes={here}))
    for attempt in range(5):  # it lists the steps: one may vanish meanwhile (deleted by the run that trains)
      try:
        self.reader = ocp.CheckpointManager(self.directory, item_names=ITEMS, options=options)
        break
      except FileNotFoundError:
        if attempt == 4:
          raise

  def all_steps(self) -> list[int]:
    """The complete steps, listed afresh (another process may have saved or deleted some meanwhile)."""
    return _complete_steps(self.directory)

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def _where(self, step: int) -> str:
    return f'{self.directory}/{step}'

  def _json_items(self, step: int) -> tuple[dict | None, dict]:
    """(checksums or None for an old checkpoint, meta) of `step`, both verified."""
    with self._gone_if_deleted(step):
      return self._read_json_items(step)

  @contextlib.contextmanager
  def _gone_if_deleted(self, step: int):
    """Turns "damaged" into `CheckpointGone` when the step's folder no longer exists: the training run that owns
    it renamed it away (deleted it) between two of the reader's looks, so what looked missing was never damaged."""
    try:
      yield
    except CheckpointDamaged:
      if not os.path.isdir(os.path.join(self.directory, str(step))):
        raise CheckpointGone(f'{self._where(step)}: no longer exists (deleted while being read)') from None
      raise

  def _read_json_items(self, step: int) -> tuple[dict | None, dict]:
    folder, where = os.path.join(self.directory, str(step)), self._where(step)
    if not os.path.isdir(folder):
      raise CheckpointGone(f'{where}: no longer exists (deleted while being read)')
    if not os.path.isdir(os.path.join(folder, 'meta')):
      raise CheckpointDamaged(f'{where}: damaged checkpoint (its meta item is missing)')
    names = ('meta', 'checksums') if os.path.isdir(os.path.join(folder, 'checksums')) else ('meta',)
    try:
      out = self.reader.restore(step, args=ocp.args.Composite(**{n: ocp.args.JsonRestore() for n in names}))
    except Exception as e:  # noqa: BLE001 - whatever orbax raises for a file it cannot parse (or a deleted one)
      raise CheckpointDamaged(f'{where}: damaged checkpoint (cannot read its {" / ".join(names)}: '
                              f'{integrity.first_line(e)})') from None
    meta, sums = out['meta'], out.get('checksums') if 'checksums' in names else None
    if sums is not None:
      rest = {k: v for k, v in sums.items() if k != 'self'} if isinstance(sums, dict) else None
      if rest is None or sums.get('self') != integrity.json_checksum(rest):
        raise CheckpointDamaged(f'{where}: damaged checkpoint (its checksums item was changed)')
      if integrity.json_checksum(meta) != sums.get('meta'):
        raise CheckpointDamaged(f'{where}: damaged checkpoint (its meta item differs from its checksum)')
    if not isinstance(meta, dict):
      raise CheckpointDamaged(f'{where}: damaged checkpoint (its meta item is not a JSON object)')
    return sums, meta

  def meta(self, step: int) -> dict:
    """The verified `meta` item of `step`."""
    return self._json_items(step)[1]

  def best(self, metric: str, mode: str, on_damaged=None) -> tuple[int, float] | None:
    """(step, value) of the step whose saved validation `metric` is best (the earliest of equal ones); None when
    no checkpoint has one.
    A damaged step raises CheckpointDamaged, or is passed to `on_damaged(step, error)` and skipped."""
    scored = []
    for s in self.all_steps():
      try:
        m = self.meta(s)
      except CheckpointGone:
        continue
      except CheckpointDamaged as e:
        if on_damaged is None:
          raise
        on_damaged(s, e)
        continue
      if metric in m.get('validation', {}):
        scored.append((m['validation'][metric], s))
    if not scored:
      return None
    # Ties go to the earliest step, the one training's log names as best (a later equal value is no improvement).
    value, step = min(scored, key=lambda vs: (vs[0] if mode == 'min' else -vs[0], vs[1]))
    return step, value

  def best_step(self, metric: str, mode: str) -> int | None:
    found = self.best(metric, mode)
    return None if found is None else found[0]

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
    """Saves `step` (`train` and `data` only when given) with its checksums, then (process 0) deletes what is
    neither among the last `keep` nor the best by `metric`. A failed save (full disk, read-only file system)
    removes what it wrote and raises WorkdirError; earlier checkpoints are untouched."""
    meta = json.loads(json.dumps(meta or {}))  # exactly what a restore will read back
    sums = {'params': integrity.array_checksums(params), 'meta': integrity.json_checksum(meta)}
    items = {'params': ocp.args.StandardSave(params), 'meta': ocp.args.JsonSave(meta)}
    if train is not None:
      sums['train'] = integrity.array_checksums(train)
      items['train'] = ocp.args.StandardSave(train)
    if data is not None:
      data = json.loads(json.dumps(data))
      sums['data'] = integrity.json_checksum(data)
      items['data'] = ocp.args.JsonSave(data)
    sums['self'] = integrity.json_checksum(sums)
    items['checksums'] = ocp.args.JsonSave(sums)
    self.manager.reload()  # steps deleted or moved aside by us are not in orbax's own list
    try:
      self.manager.save(step, args=ocp.args.Composite(**items), force=True)
      self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise several types; all end the same way
      if jax.process_index() == 0:
        self._remove(step)
      raise self._save_error(step, e) from None
    if jax.process_index() == 0:
      self._delete_old(metric, mode)

  def _save_error(self, step: int, e: BaseException) -> WorkdirError:
    codes, cause = set(), e
    while cause is not None:
      codes.add(getattr(cause, 'errno', None))
      cause = cause.__cause__ or cause.__context__
    text = integrity.first_line(e)
    earlier = [s for s in self.all_steps() if s != step]
    kept = f'the checkpoint at step {earlier[-1]} is intact' if earlier else 'no earlier checkpoint exists'
    if codes & {errno.ENOSPC, errno.EDQUOT} or 'RESOURCE_EXHAUSTED' in text or 'No space left' in text:
      free = integrity.human_size(shutil.disk_usage(self.directory).free)
      return WorkdirError(f'{self.workdir}: no space left on its file system ({free} free once the partial save '
                          f'was removed) while saving the checkpoint at step {step}; {kept}')
    return WorkdirError(f'{self.workdir}: could not save the checkpoint at step {step} ({type(e).__name__}: '
                        f'{text}); the partial save was removed and {kept}')

  def _remove(self, step: int) -> None:
    """Removes what a failed save of `step` left: orbax's temporary directory (and the step, if renamed). Other
    writes of the same save may still run in orbax's threads when the first error arrives, and create folders
    again: done once nothing has come back for half a second (at most ~10 s; a later start removes the rest)."""
    quiet_since = None
    for _ in range(100):
      left = [n for n in os.listdir(self.directory) if n == str(step) or n.startswith(f'{step}{TMP_MARK}')]
      for name in left:
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
      now = time.monotonic()
      quiet_since = None if left else quiet_since or now
      if quiet_since is not None and now - quiet_since >= 0.5:
        return
      time.sleep(0.1)

  def _delete_old(self, metric: str, mode: str) -> None:
    steps = self.all_steps()
    keep = set(steps[-self.keep:])
    if metric:
      best = self.best(metric, mode, on_damaged=lambda s, e: self.quarantine(s, str(e)))
      keep.add(best[0] if best is not None else steps[-1])
    for old in self.all_steps():
      if old not in keep:
        self.delete(old)

  def delete(self, step: int) -> None:
    """Renames the step to a hidden name, then removes it: a reader sees it whole or not at all."""
    hidden = os.path.join(self.directory, f'{DELETING}{step}-{os.getpid()}')
    try:
      os.rename(os.path.join(self.directory, str(step)), hidden)
    except FileNotFoundError:
      return
    shutil.rmtree(hidden, ignore_errors=True)

  def quarantine(self, step: int, reason: str) -> str:
    """Moves a damaged step aside to N.damaged (never deletes it) and warns; returns the new path."""
    target, n = os.path.join(self.directory, f'{step}{DAMAGED}'), 1
    while os.path.exists(target):
      n += 1
      target = os.path.join(self.directory, f'{step}{DAMAGED}-{n}')
    os.rename(os.path.join(self.directory, str(step)), target)
    self.warn(f'warning: {reason}; moved aside to {target}, not used and not deleted')
    return target

  def remove_leftovers(self) -> None:
    """Removes temporary directories of saves and deletions that a killed run left (only while holding the
    workdir's lock: no other process writes here then)."""
    for name in os.listdir(self.directory) if os.path.isdir(self.directory) else []:
      if TMP_MARK in name or name.startswith(DELETING):
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def restore(self, step: int, like_params, like_train=None) -> dict:
    """Restores `step` into the structure, shapes and dtypes of `like_params` (and of `like_train` with the
    data iterator's state when given) and verifies every checksum. Returns {'params', 'meta'[, 'train', 'data']}.

    Raises CheckpointError when the checkpoint was saved for other shapes, CheckpointDamaged when its files
    changed since the save, CheckpointGone when it was deleted meanwhile."""
    with self._gone_if_deleted(step):
      return self._restore(step, like_params, like_train)

  def _restore(self, step: int, like_params, like_train) -> dict:
    where, folder = self._where(step), os.path.join(self.directory, str(step))
    sums, meta = self._read_json_items(step)  # `restore` guards the whole read
    if sums is None:
      return self._restore_unverified(step, like_params, like_train, meta)
    integrity.check_structure(sums['params'], like_params, where)
    items = {'params': ocp.args.StandardRestore(_abstract(like_params))}
    if like_train is not None:
      if 'train' not in sums or 'data' not in sums:
        raise CheckpointError(f'{where}: holds parameters only (no optimizer state): cannot resume from it')
      integrity.check_structure(sums['train'], like_train, where)
      items.update(train=ocp.args.StandardRestore(_abstract(like_train)), data=ocp.args.JsonRestore())
    for name in items:
      if not os.path.isdir(os.path.join(folder, name)):
        raise CheckpointDamaged(f'{where}: damaged checkpoint (its {name} item is missing)')
    try:
      out = dict(self.reader.restore(step, args=ocp.args.Composite(**items)))
    except Exception as e:  # noqa: BLE001 - the shapes fit (checked above): damaged files (or deleted ones)
      raise CheckpointDamaged(f'{where}: damaged checkpoint (cannot read it: {integrity.first_line(e)})') \
          from None
    for name in ('params', 'train'):
      if name in out:
        integrity.verify(integrity.array_checksums(out[name]), sums[name], f'{where}: damaged checkpoint')
    if 'data' in out and integrity.json_checksum(out['data']) != sums['data']:
      raise CheckpointDamaged(f'{where}: damaged checkpoint (its data item differs from its checksum)')
    out['meta'] = meta
    return out

  def _restore_unverified(self, step: int, like_params, like_train, meta: dict) -> dict:
    """A checkpoint from before checksums: read as it is."""
    where = self._where(step)
    items = {'params': ocp.args.StandardRestore(_abstract(like_params))}
    if like_train is not None:
      items.update(train=ocp.args.StandardRestore(_abstract(like_train)), data=ocp.args.JsonRestore())
    try:
      out = dict(self.reader.restore(step, args=ocp.args.Composite(**items)))
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f'{where}: does not fit this config or is damaged ({integrity.first_line(e)}); it '
                            f'has no checksums to tell which') from None
    integrity.check_fits(out['params'], like_params, where)
    if like_train is not None:
      integrity.check_fits(out['train'], like_train, where)
    out['meta'] = meta
    return out

  def close(self) -> None:
    self.reader.close()
    if self.manager is not None:
      self.manager.close()


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def average_params(params: list) -> object:
  """Element-wise mean of several parameter trees (float64 accumulation)."""
  return jax.tree.map(lambda *xs: (sum(np.asarray(x, np.float64) for x in xs) / len(xs)).astype(xs[0].dtype),
                      *params)
