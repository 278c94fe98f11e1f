"""What makes a checkpoint trustworthy: checksums of its arrays and JSON items, the structure it was saved with,
and quiet failures of orbax's background threads. Used by checkpoint.py (see there what is checked when).
"""

import hashlib
import json
import logging
import sys
import types

import jax
import numpy as np

from seq2seq_jax.errors import CheckpointDamaged, CheckpointError


def array_checksums(tree) -> dict:
  """{path: [dtype, shape, SHA-256 of the bytes]} of every array of `tree`."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    x = np.asarray(leaf)  # (not ascontiguousarray: it makes a 0-d array 1-d; tobytes() is in C order anyway)
    out[jax.tree_util.keystr(path)] = [str(x.dtype), list(x.shape), hashlib.sha256(x.tobytes()).hexdigest()]
  return out


def json_checksum(value) -> str:
  return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


class _NeverRetrieved(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(('Task exception was never retrieved',
                                               'Future exception was never retrieved'))


def quiet_background_errors() -> None:
  """Drops what a failed orbax read or write leaves behind after its error has been raised (and reported in one
  line), dozens of stray tracebacks otherwise: 'Event loop is closed' from tensorstore callbacks in orbax's
  threads, errors of orbax's unfinished coroutines when they are closed, and asyncio's 'Task exception was never
  retrieved' for the sibling reads and writes that failed the same way."""
  if getattr(sys.unraisablehook, 'seq2seq_quiet', False):
    return
  logging.getLogger('asyncio').addFilter(_NeverRetrieved())
  previous = sys.unraisablehook

  def hook(unraisable):
    closed_loop = isinstance(unraisable.exc_value, RuntimeError) and 'Event loop is closed' in str(unraisable.exc_value)
    if closed_loop or isinstance(unraisable.object, types.CoroutineType):
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


def first_line(e: BaseException) -> str:
  """The first line of the most telling message in `e`'s chain: orbax wraps tensorstore's errors (which name
  the status and the file, e.g. "OUT_OF_RANGE: Error reading ...") in one that prints a whole spec."""
  chain = []
  while e is not None and len(chain) < 10:
    chain.append(e)
    e = e.__cause__ or e.__context__
  best = next((c for c in chain if 'See full TensorStore details' not in str(c)), chain[0])
  return next((line.strip() for line in str(best).splitlines() if line.strip()), type(best).__name__)[:300]


def check_structure(saved: dict, like, where: str) -> None:
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


def verify(got: dict, saved: dict, prefix: str) -> None:
  for path in sorted(saved):
    if got.get(path) != saved[path]:
      raise CheckpointDamaged(f'{prefix} (the bytes of {path} differ from their checksum)')


def check_fits(restored, like, where: str) -> None:
  """Orbax restores what was saved even when the target's shapes differ: compare them ourselves."""
  got = jax.tree_util.tree_flatten_with_path(restored)[0]
  want = jax.tree_util.tree_flatten_with_path(like)[0]
  if len(got) != len(want):
    raise CheckpointError(f'{where}: does not fit this config ({len(got)} arrays saved, {len(want)} expected)')
  for (path, a), (_, b) in zip(got, want):
    if np.shape(a) != np.shape(b) or np.asarray(a).dtype != b.dtype:
      raise CheckpointError(f'{where}: does not fit this config ({jax.tree_util.keystr(path)} is '
                            f'{np.asarray(a).dtype}{list(np.shape(a))} there, {b.dtype}{list(b.shape)} here)')
