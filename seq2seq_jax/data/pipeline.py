"""From token ids to padded, length-bucketed batches; the training stream is a grain dataset.

A batch is a dict of numpy arrays (B batch, S source length, T target length):
  src (B, S) int32      source ids followed by EOS, then PAD
  src_len (B,) int32    real source length (with EOS)
  tgt_in (B, T) int32   BOS y_1 .. y_n, then PAD
  tgt_out (B, T) int32  y_1 .. y_n EOS, then PAD
  weights (B, T) f32    1 at real target positions; 0 at padding and in filler rows
  index (B,) int32      the example's position in its split, -1 for filler rows
  src_ext (B, S) int32  only for the pointer-generator (model.copy): each source position's extended target id
                        (data/copying.py), then EOS, then PAD, like `src`
and, when asked for (`refs=True`: training on a sequence-level cost, which compares with every reference):
  refs (B, R, W) int32  the targets of all examples with this example's source (itself included), each
                        y_1 .. y_n EOS then PAD; R and W are the largest counts and target length + 1 of the split
  refs_len (B, R) int32 their lengths without EOS; 0 for an empty slot

Batches take their examples from one (source, target) length bucket and pad S and T up to the bucket's
boundaries; rare buckets are merged into larger ones, so a whole run sees only a handful of shapes (jit compiles
each once). The last batch of a bucket is filled up with
copies of its first row whose weights are 0: they change no loss, gradient or metric.

A batch has a fixed number of rows, or (with a token budget, `rows_by_key`) one number of rows per bucket, the
most that fit the budget: still one shape per bucket.
"""

import functools
import threading
from typing import Mapping

import grain
import numpy as np

from seq2seq_jax.data.vocab import BOS, EOS, PAD
from seq2seq_jax.errors import ConfigError


def bucket_len(n: int, step: int) -> int:
  """Smallest boundary >= n. Boundaries: step, 2 step, 3 step, 4 step, then growing by 1.5x (multiples of step)."""
  b = step
  while b < n:
    b = b + step if b < 4 * step else -(-int(b * 1.5) // step) * step
  return b


def source_buckets(max_source_len: int, step: int) -> dict[int, int]:
  """Every padded length that sources of 1 .. max_source_len symbols (plus EOS) get, each with the number of
  symbols of the longest source padded to it."""
  return {bucket_len(n + 1, step): n for n in range(1, max_source_len + 1)}


def merge_rare_keys(keys_Nx2: np.ndarray, min_count: int = 128) -> np.ndarray:
  """Moves examples of (S, T) keys rarer than `min_count` into the smallest frequent key that fits them.

  Rare keys (long outliers) would each cost a compilation for a few batches; padding them a little more
  keeps the number of shapes near the number of frequent keys.
  """
  if len(keys_Nx2) == 0:
    return keys_Nx2
  uniq, inverse, counts = np.unique(keys_Nx2, axis=0, return_inverse=True, return_counts=True)
  frequent = uniq[counts >= min_count]
  target = uniq.copy()
  for i, (key, count) in enumerate(zip(uniq, counts)):
    fits = frequent[(frequent >= key).all(axis=1)] if count < min_count else []
    if len(fits):
      target[i] = fits[np.argmin(fits.prod(axis=1))]
  return target[inverse.reshape(-1)]


def pad_sources(seqs, s_len: int, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Source rows (rows, s_len) int32 and their lengths: each sequence, EOS, then PAD; rows beyond the given
  sequences (filler, up to `rows`) hold EOS alone. Lengths count EOS."""
  rows = len(seqs) if rows is None else rows
  src = np.full((rows, s_len), PAD, np.int32)
  src[:, 0] = EOS
  src_len = np.ones((rows,), np.int32)
  for row, s in enumerate(seqs):
    src[row, :len(s)], src[row, len(s)] = s, EOS
    src_len[row] = len(s) + 1
  return src, src_len


class Examples:
  """One split as token ids: `src[i]` (without EOS) and `tgt[i]` (without BOS/EOS); with `src_ext` also
  each source's extended ids (model.copy)."""

  def __init__(self, src: list, tgt: list, step: int, src_ext: list | None = None):
    self.src = [np.asarray(s, np.int32) for s in src]
    self.tgt = [np.asarray(t, np.int32) for t in tgt]
    self.src_ext = None if src_ext is None else [np.asarray(e, np.int32) for e in src_ext]
    self.keys = merge_rare_keys(np.array([(bucket_len(len(s) + 1, step), bucket_len(len(t) + 1, step))
                                          for s, t in zip(self.src, self.tgt)], np.int32).reshape(-1, 2))

  def __len__(self) -> int:
    return len(self.src)

  @functools.cached_property
  def references(self) -> tuple[list[list[int]], int, int]:
    """The examples that share each example's source (their targets are its references), and the static
    (R, W) of `refs`: the most references of a source, the longest target + 1."""
    groups = {}
    for i, s in enumerate(self.src):
      groups.setdefault(s.tobytes(), []).append(i)
    of = [groups[s.tobytes()] for s in self.src]
    return of, max(map(len, of), default=1), max((len(t) for t in self.tgt), default=0) + 1

  def batch(self, idx: np.ndarray, rows: slice = slice(None), refs: bool = False) -> dict:
    """Pads the examples `idx` (-1: filler) to the largest bucket shape among them; only `rows` of them are
    built (a process's share of a global batch), with the shape that the whole batch gets. `refs`: with every
    reference of each source (see the module's docstring)."""
    real = idx[idx >= 0]
    s_len, t_len = self.keys[real].max(axis=0)
    idx = np.where(idx >= 0, idx, -1 - real[0])[rows]  # fillers remember which example they copy
    b = len(idx)
    copied = np.where(idx >= 0, idx, -1 - idx)
    src, src_len = pad_sources([self.src[i] for i in copied], s_len)
    out = {'src': src, 'src_len': src_len,
           'tgt_in': np.full((b, t_len), PAD, np.int32), 'tgt_out': np.full((b, t_len), PAD, np.int32),
           'weights': np.zeros((b, t_len), np.float32), 'index': np.where(idx >= 0, idx, -1).astype(np.int32)}
    if self.src_ext is not None:
      out['src_ext'] = pad_sources([self.src_ext[i] for i in copied], s_len)[0]
    for row, i in enumerate(copied):
      t = self.tgt[i]
      out['tgt_in'][row, 0], out['tgt_in'][row, 1:len(t) + 1] = BOS, t
      out['tgt_out'][row, :len(t)], out['tgt_out'][row, len(t)] = t, EOS
      out['weights'][row, :len(t) + 1] = float(idx[row] >= 0)
    if refs:
      of, most, width = self.references
      out['refs'], out['refs_len'] = np.full((b, most, width), PAD, np.int32), np.zeros((b, most), np.int32)
      for row, i in enumerate(copied):
        for slot, j in enumerate(of[i]):
          t = self.tgt[j]
          out['refs'][row, slot, :len(t)], out['refs'][row, slot, len(t)] = t, EOS
          out['refs_len'][row, slot] = len(t)
    return out

  def rows_by_key(self, batch_tokens: int, multiple: int = 1, accumulate: int = 1) -> dict:
    """{(S, T): rows} of a batch of each bucket under a budget of `batch_tokens` padded positions: the most rows,
    a multiple of `multiple` (the device count), with rows x (S + T) <= batch_tokens; but no more than the bucket
    needs for one step of `accumulate` such batches, so that a small bucket is not padded with filler rows."""
    rows = {}
    keys, counts = np.unique(self.keys, axis=0, return_counts=True)
    for (s_len, t_len), count in zip(keys.tolist(), counts.tolist()):
      fit = batch_tokens // (s_len + t_len) // multiple * multiple
      if fit < multiple:
        raise ConfigError(f'config data.batch_tokens={batch_tokens} is too small for the length bucket of {s_len} '
                          f'source + {t_len} target positions: {multiple} row(s) (one per device) need '
                          f'{multiple * (s_len + t_len)}')
      rows[(s_len, t_len)] = min(fit, -(-count // (accumulate * multiple)) * multiple)
    return rows

  def plan(self, batch_size: int | Mapping, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Index arrays of one pass over the data, grouped by bucket; shuffled when `rng` is given. `batch_size`:
    the rows of every batch, or {(S, T): rows} per bucket."""
    order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
    batches = []
    for key in sorted({tuple(k) for k in self.keys.tolist()}):
      size = batch_size if isinstance(batch_size, int) else batch_size[key]
      members = order[(self.keys[order] == key).all(axis=1)]
      for start in range(0, len(members), size):
        chunk = members[start:start + size]
        batches.append(np.concatenate([chunk, np.full(size - len(chunk), -1)]))
    if rng is not None:
      batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def process_rows(batch_rows: int, process: tuple[int, int]) -> slice:
  """Process p of P builds rows [p * B / P, (p + 1) * B / P) of every global batch of B rows."""
  p, n = process
  return slice(p * batch_rows // n, (p + 1) * batch_rows // n)


class _TrainBatches:
  """Random access to the endless shuffled batch stream: batch i of epoch i // per_epoch (only this process's
  rows)."""

  def __init__(self, examples: Examples, batch_size: int | Mapping, seed: int, process: tuple[int, int],
               refs: bool):
    self.examples, self.batch_size, self.seed, self.process, self.refs = examples, batch_size, seed, process, refs
    if refs:
      examples.references  # noqa: B018 - computed once here, not by the loader's threads at the same time
    self.per_epoch = len(examples.plan(batch_size))
    self._plans, self._lock = {}, threading.Lock()

  def __len__(self) -> int:
    return self.per_epoch * 1_000_000

  def __getitem__(self, i: int) -> dict:
    epoch, j = divmod(int(i), self.per_epoch)
    with self._lock:
      if epoch not in self._plans:
        self._plans = {e: p for e, p in self._plans.items() if e >= epoch - 1}
        self._plans[epoch] = self.examples.plan(self.batch_size, np.random.default_rng([self.seed, epoch]))
      idx = self._plans[epoch][j]
    return self.examples.batch(idx, process_rows(len(idx), self.process), self.refs)


def train_stream(examples: Examples, batch_size: int | Mapping, seed: int, threads: int = 2,
                 process: tuple[int, int] = (0, 1), refs: bool = False) -> grain.IterDataset:
  """Endless, seeded, bucketed training batches of `batch_size` rows (or {(S, T): rows}, `Examples.rows_by_key`);
  of each global batch only the rows of `process` = (index, count) (`process_rows`); `refs`: with all references
  of each source (`Examples.batch`).

  `iter(...)` has `get_state()`/`set_state()` for exact resume; the state (a batch counter) is the same in
  every process, so a run resumes with any number of processes.
  """
  if len(examples) == 0:
    raise ValueError('no training examples')
  return grain.MapDataset.source(_TrainBatches(examples, batch_size, seed, process, refs)).to_iter_dataset(
      grain.ReadOptions(num_threads=threads, prefetch_buffer_size=8))


def eval_batches(examples: Examples, batch_size: int):
  """One ordered pass (bucketed, filler rows marked with index -1)."""
  for idx in examples.plan(batch_size):
    yield examples.batch(idx)
