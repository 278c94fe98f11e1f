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

import errno
import hashlib
import json
import os
import shutil
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from seq2seq_jax.errors import CheckpointDamaged, CheckpointError, WorkdirError

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


def array_checksums(tree) -> dict:
  """{path: [dtype, shape, SHA-256 of the bytes]} of every array of `tree`."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    x = np.asarray(leaf)  # (not ascontiguousarray: it makes a 0-d array 1-d; tobytes() is in C order anyway)
    out[jax.tree_util.keystr(path)] = [str(x.dtype), list(x.shape), hashlib.sha256(x.tobytes()).hexdigest()]
  return out


def json_checksum(value) -> str:
  return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def quiet_background_errors() -> None:
  """Drops the 'Event loop is closed' errors that tensorstore callbacks raise in orbax's threads after a failed
  read or write has already been reported (dozens of stray tracebacks after the one-line error)."""
  if getattr(sys.unraisablehook, 'seq2seq_quiet', False):
    return
  previous = sys.unraisablehook

  def hook(unraisable):
    if isinstance(unraisable.exc_value, RuntimeError) and 'Event loop is closed' in str(unraisable.exc_value):
      return
    previous(unraisable)
  hook.seq2seq_quiet = True
  sys.unraisablehook = hook


def human_size(n: float) -> str:
  for unit in ('bytes', 'KiB', 'MiB', 'GiB'):
    if n < 1024 or unit == 'GiB':
      return f'{n:.0f} {unit}' if unit == 'bytes' else f'{n:.1f} {unit}'
    n /= 1024
  return ''


def _first_line(e: BaseException) -> str:
  """The first line of the most telling message in `e`'s chain: orbax wraps tensorstore's errors (which name
  the status and the file, e.g. "OUT_OF_RANGE: Error reading ...") in one that prints a whole spec."""
  chain = []
  while e is not None and len(chain) < 10:
    chain.append(e)
    e = e.__cause__ or e.__context__
  best = next((c for c in chain if 'See full TensorStore details' not in str(c)), chain[0])
  return next((line.strip() for line in str(best).splitlines() if line.strip()), type(best).__name__)[:300]


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
    quiet_background_errors()
    # Saving is collective (every process of a run calls it; orbax synchronises them). Reading goes through a
    # manager of this process alone: no barriers, so processes may read different steps or a different number
    # of them (a damaged step, a meta read by process 0 only) without waiting for each other forever.
    self.manager = None if read_only else ocp.CheckpointManager(
        self.directory, item_names=ITEMS,
        options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True, enable_async_checkpointing=False))
    here = jax.process_index()
    self.reader = ocp.CheckpointManager(
        self.directory, item_names=ITEMS,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=None, read_only=True, enable_async_checkpointing=False,
            multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=here, active_processes={here})))

  def all_steps(self) -> list[int]:
    """The complete steps, listed afresh (another process may have saved or deleted some meanwhile)."""
    try:
      names = os.listdir(self.directory)
    except FileNotFoundError:
      return []
    return sorted(int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(self.directory, n)))

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def _where(self, step: int) -> str:
    return f'{self.directory}/{step}'

  def _json_items(self, step: int) -> tuple[dict | None, dict]:
    """(checksums or None for an old checkpoint, meta) of `step`, both verified."""
    folder, where = os.path.join(self.directory, str(step)), self._where(step)
    if not os.path.isdir(folder):
      raise CheckpointGone(f'{where}: no longer exists (deleted while being read)')
    if not os.path.isdir(os.path.join(folder, 'meta')):
      raise CheckpointDamaged(f'{where}: damaged checkpoint (its meta item is missing)')
    names = ('meta', 'checksums') if os.path.isdir(os.path.join(folder, 'checksums')) else ('meta',)
    try:
      out = self.reader.restore(step, args=ocp.args.Composite(**{n: ocp.args.JsonRestore() for n in names}))
    except Exception as e:  # noqa: BLE001 - whatever orbax raises for a file it cannot parse
      if not os.path.isdir(folder):
        raise CheckpointGone(f'{where}: no longer exists (deleted while being read)') from None
      raise CheckpointDamaged(f'{where}: damaged checkpoint (cannot read its {" / ".join(names)}: '
                              f'{_first_line(e)})') from None
    meta, sums = out['meta'], out.get('checksums') if 'checksums' in names else None
    if sums is not None:
      if not isinstance(sums, dict) or sums.get('self') != json_checksum({k: v for k, v in sums.items()
                                                                          if k != 'self'}):
        raise CheckpointDamaged(f'{where}: damaged checkpoint (its checksums item was changed)')
      if json_checksum(meta) != sums.get('meta'):
        raise CheckpointDamaged(f'{where}: damaged checkpoint (its meta item differs from its checksum)')
    if not isinstance(meta, dict):
      raise CheckpointDamaged(f'{where}: damaged checkpoint (its meta item is not a JSON object)')
    return sums, meta

  def meta(self, step: int) -> dict:
    """The verified `meta` item of `step`."""
    return self._json_items(step)[1]

  def best(self, metric: str, mode: str, on_damaged=None) -> tuple[int, float] | None:
    """(step, value) of the step whose saved validation `metric` is best; None when no checkpoint has one.
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
    value, step = (min if mode == 'min' else max)(scored, key=lambda vs: (vs[0], -vs[1]))
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
    sums = {'params': array_checksums(params), 'meta': json_checksum(meta)}
    items = {'params': ocp.args.StandardSave(params), 'meta': ocp.args.JsonSave(meta)}
    if train is not None:
      sums['train'] = array_checksums(train)
      items['train'] = ocp.args.StandardSave(train)
    if data is not None:
      data = json.loads(json.dumps(data))
      sums['data'] = json_checksum(data)
      items['data'] = ocp.args.JsonSave(data)
    sums['self'] = json_checksum(sums)
    items['checksums'] = ocp.args.JsonSave(sums)
    self.manager.reload()  # steps deleted or moved aside by us are not in orbax's own list
    try:
      self.manager.save(step, args=ocp.args.Composite(**items), force=True)
      self.manager.wait_until_finished()
    except (OSError, ValueError, RuntimeError) as e:
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
    text = _first_line(e)
    earlier = [s for s in self.all_steps() if s != step]
    kept = f'the checkpoint at step {earlier[-1]} is intact' if earlier else 'no earlier checkpoint exists'
    if codes & {errno.ENOSPC, errno.EDQUOT} or 'RESOURCE_EXHAUSTED' in text or 'No space left' in text:
      free = human_size(shutil.disk_usage(self.directory).free)
      return WorkdirError(f'{self.workdir}: no space left on its file system ({free} free once the partial save '
                          f'was removed) while saving the checkpoint at step {step}; {kept}')
    return WorkdirError(f'{self.workdir}: could not save the checkpoint at step {step} ({text}); the partial '
                        f'save was removed and {kept}')

  def _remove(self, step: int) -> None:
    """Removes what a failed save of `step` left: orbax's temporary directory (and the step, if renamed)."""
    for name in os.listdir(self.directory):
      if name == str(step) or name.startswith(f'{step}{TMP_MARK}'):
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

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
    where, folder = self._where(step), os.path.join(self.directory, str(step))
    sums, meta = self._json_items(step)
    if sums is None:
      return self._restore_unverified(step, like_params, like_train, meta)
    _check_structure(sums['params'], like_params, where)
    items = {'params': ocp.args.StandardRestore(_abstract(like_params))}
    if like_train is not None:
      if 'train' not in sums or 'data' not in sums:
        raise CheckpointError(f'{where}: holds parameters only (no optimizer state): cannot resume from it')
      _check_structure(sums['train'], like_train, where)
      items.update(train=ocp.args.StandardRestore(_abstract(like_train)), data=ocp.args.JsonRestore())
    for name in items:
      if not os.path.isdir(os.path.join(folder, name)):
        raise CheckpointDamaged(f'{where}: damaged checkpoint (its {name} item is missing)')
    try:
      out = dict(self.reader.restore(step, args=ocp.args.Composite(**items)))
    except Exception as e:  # noqa: BLE001 - the shapes fit (checked above): a failure means damaged files
      if not os.path.isdir(folder):
        raise CheckpointGone(f'{where}: no longer exists (deleted while being read)') from None
      raise CheckpointDamaged(f'{where}: damaged checkpoint (cannot read it: {_first_line(e)})') from None
    for name in ('params', 'train'):
      if name in out:
        _verify(array_checksums(out[name]), sums[name], f'{where}: damaged checkpoint')
    if 'data' in out and json_checksum(out['data']) != sums['data']:
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
      raise CheckpointError(f'{where}: does not fit this config or is damaged ({_first_line(e)}); it has no '
                            f'checksums to tell which') from None
    _check_fits(out['params'], like_params, where)
    if like_train is not None:
      _check_fits(out['train'], like_train, where)
    out['meta'] = meta
    return out

  def close(self) -> None:
    self.reader.close()
    if self.manager is not None:
      self.manager.close()


def _check_structure(saved: dict, like, where: str) -> None:
  """The arrays recorded at save time against those this config expects: paths, dtypes and shapes."""
  want = _layout(like)
  got = {k: v[:2] for k, v in saved.items()}
  if got == want:
    return
  if set(got) != set(want):
    extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
    detail = f'{extra[0]} saved but not expected' if extra else f'{missing[0]} expected but not saved'
    raise CheckpointError(f'{where}: does not fit this config ({len(got)} arrays saved, {len(want)} expected; '
                          f'{detail})')
  path = next(k for k in sorted(want) if got[k] != want[k])
  raise CheckpointError(f'{where}: does not fit this config ({path} is {got[path][0]}{got[path][1]} there, '
                        f'{want[path][0]}{want[path][1]} here)')


def _layout(tree) -> dict:
  """{path: [dtype, shape]} of arrays or abstract arrays (anything with .dtype and .shape)."""
  return {jax.tree_util.keystr(path): [str(np.dtype(x.dtype)), list(x.shape)]
          for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _verify(got: dict, saved: dict, prefix: str) -> None:
  for path in sorted(saved):
    if got.get(path) != saved[path]:
      raise CheckpointDamaged(f'{prefix} (the bytes of {path} differ from their checksum)')


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
