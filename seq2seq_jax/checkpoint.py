"""Orbax checkpoints of the train state, with the data iterator's position and run metadata beside it.

Each step directory holds three items: `state` (TrainState: step, params, optimizer state, PRNG key),
`data` (the grain iterator state, JSON) and `meta` (JSON: metrics at that step). Orbax writes into a
temporary directory and renames it when complete, so a checkpoint cut short by a crash is never listed.
"""

import os

import jax
import orbax.checkpoint as ocp

from seq2seq_jax.errors import CheckpointError


class Checkpointer:
  """Saves and restores `TrainState` pytrees in `workdir/checkpoints`."""

  def __init__(self, workdir: str, max_to_keep: int = 3, read_only: bool = False):
    self.directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
    if read_only and not os.path.isdir(self.directory):
      raise CheckpointError(f'{workdir}: has no checkpoints')
    self.manager = ocp.CheckpointManager(
        self.directory, item_names=('state', 'data', 'meta'),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                             read_only=read_only, enable_async_checkpointing=False))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state, data: dict, meta: dict) -> None:
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    data=ocp.args.JsonSave(data), meta=ocp.args.JsonSave(meta)),
                      force=True)
    self.manager.wait_until_finished()

  def restore(self, step: int, like_state) -> tuple:
    """Restores step `step` into the structure, shapes and dtypes of `like_state`; returns (state, data, meta)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                               data=ocp.args.JsonRestore(),
                                                               meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as e:
      raise CheckpointError(f'{self.directory}/{step}: does not fit this config ({str(e).splitlines()[0]})') from e
    return out['state'], out['data'], out['meta']

  def close(self) -> None:
    self.manager.close()
