"""Data parallelism over the local devices with `jax.pmap`.

The global batch (B rows) is split into (N, B / N) for N devices; parameters and optimizer state are
replicated (a leading device axis) and stay identical because every device applies the same summed gradient.
"""

import functools

import flax.jax_utils
import jax
import numpy as np

from seq2seq_jax import steps
from seq2seq_jax.errors import ConfigError

AXIS = 'batch'


def check_batch_size(batch_size: int, devices: int) -> None:
  if batch_size % devices:
    raise ConfigError(f'data.batch_size={batch_size} does not divide by the {devices} devices in use; '
                      f'choose a multiple of {devices}')


def shard(batch: dict, devices: int) -> dict:
  """(B, ...) numpy arrays -> (N, B / N, ...)."""
  return jax.tree.map(lambda x: x.reshape((devices, x.shape[0] // devices) + x.shape[1:]), batch)


def replicate(tree):
  return flax.jax_utils.replicate(tree)


def unreplicate(tree):
  return jax.device_get(flax.jax_utils.unreplicate(tree))


def train_step(model, cfg):
  """pmapped `steps.train_step`: (replicated state, sharded batch) -> (state, summed metrics per device)."""
  return jax.pmap(functools.partial(steps.train_step, model=model, cfg=cfg, axis_name=AXIS),
                  axis_name=AXIS, donate_argnums=(0,))


def eval_step(model):
  return jax.pmap(functools.partial(steps.eval_step, model=model, axis_name=AXIS), axis_name=AXIS)


def first(tree):
  """The first device's copy of per-device values (they are equal after a psum)."""
  return jax.tree.map(lambda x: np.asarray(x[0]), tree)
