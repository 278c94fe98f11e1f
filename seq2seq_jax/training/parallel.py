"""Data parallelism over all devices: `jax.pmap` (default) or `jax.shard_map` over a one-axis mesh.

The global batch (B rows) is split evenly over the N devices of all processes; each process feeds only its
own rows. Parameters and optimizer state are replicated and stay identical, because every device applies the
same gradient: the loss is the sum over all devices' tokens divided by the total token count.

  pmap       state carries a leading device axis; gradients are summed with `lax.psum`.
  shard_map  state is a replicated global array; the step runs with `check_vma=False` and psums the
             gradients itself, exactly like pmap. With the default `check_vma=True` the model does not even
             trace (its scans start from constant zero carries, which JAX types as device-invariant, while the
             carries they return vary over the batch axis); and were it made to trace, JAX's transpose of the
             implicit broadcast of replicated parameters would already sum the gradient, so this psum would
             then multiply it by N. `test_parallel.py` checks both.
"""

import functools

import flax.jax_utils
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from seq2seq_jax.data import pipeline
from seq2seq_jax.training import steps

AXIS = 'batch'


def batch_rows(cfg, examples: pipeline.Examples) -> int | dict:
  """Rows of one step's global batch: data.batch_size, or under the token budget data.batch_tokens one number per
  length bucket (`Examples.rows_by_key`, multiples of the device count); times train.accumulate micro-batches."""
  k = cfg.train.accumulate
  if cfg.data.batch_tokens:
    return {key: k * rows for key, rows in examples.rows_by_key(cfg.data.batch_tokens, jax.device_count(), k).items()}
  return k * cfg.data.batch_size


def train_stream(cfg, examples: pipeline.Examples):
  """The run's endless training batches, each process building only its own rows of every global batch (with
  every reference of each source, `refs`, when train.objective is a sequence-level one)."""
  return pipeline.train_stream(examples, batch_rows(cfg, examples), cfg.seed,
                               process=(jax.process_index(), jax.process_count()),
                               refs=cfg.train.objective != 'xent')


class DataParallel:
  """Replicates the train state, feeds batches and runs the train step in the configured mode."""

  def __init__(self, model, cfg, mode: str | None = None, objective=None):
    """`objective`: train.objective's sequence-level objective (`objectives.build`), None for xent."""
    self.mode = mode or cfg.parallel.mode
    self.local = jax.local_device_count()
    if self.mode == 'pmap':
      self._step = jax.pmap(functools.partial(steps.train_step, model=model, cfg=cfg, objective=objective,
                                              axis_name=AXIS),
                            axis_name=AXIS, in_axes=(0, 0, None), donate_argnums=(0,))
      self._relayout = jax.pmap(lambda tree: tree, axis_name=AXIS)
    else:
      self.mesh = Mesh(np.array(jax.devices()), (AXIS,))
      step = jax.shard_map(functools.partial(steps.train_step, model=model, cfg=cfg, objective=objective,
                                             axis_name=AXIS, reduce_grads=True),
                           mesh=self.mesh, in_specs=(P(), P(AXIS), P()), out_specs=(P(), P()), check_vma=False)
      self._step = jax.jit(step, donate_argnums=(0,))

  def replicate(self, state):
    if self.mode == 'pmap':
      # flax lays the copies out on a mesh with another axis name than the one of the step's outputs: fed
      # as they are, the step would compile twice (for the first state, then for every later one). An
      # identity pmap gives them the step's own output layout.
      return self._relayout(flax.jax_utils.replicate(state))
    return jax.device_put(state, NamedSharding(self.mesh, P()))

  def unreplicate(self, state):
    """A host (numpy) copy of the replicated state."""
    if self.mode == 'pmap':
      return jax.device_get(flax.jax_utils.unreplicate(state))
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), state)  # works across processes too

  def shard(self, local_batch: dict):
    """This process's rows -> the step's input layout."""
    if self.mode == 'pmap':
      return jax.tree.map(lambda x: x.reshape((self.local, x.shape[0] // self.local) + x.shape[1:]), local_batch)
    return multihost_utils.host_local_array_to_global_array(local_batch, self.mesh, P(AXIS))

  def metrics(self, m) -> dict:
    """Step metrics as host numpy values (already summed over devices)."""
    if self.mode == 'pmap':
      return jax.tree.map(lambda x: np.asarray(x[0]), m)
    return jax.tree.map(np.asarray, m)

  def step(self, state, local_batch: dict, lr_scale: float = 1.0):
    """One update; `lr_scale` multiplies the learning rate (reduce-on-plateau), the same on every device."""
    return self._step(state, self.shard(local_batch), np.float32(lr_scale))

  def compile(self, state, local_batch: dict):
    """The step compiled ahead of time for this batch's shape (for XLA's cost and memory analyses)."""
    return self._step.lower(state, self.shard(local_batch), np.float32(1.0)).compile()
