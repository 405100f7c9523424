"""Orbax checkpointing of one train-state pytree, with fallback past a corrupt latest step."""
import os

import jax
import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:
  """Saves and restores the whole train state under `workdir/checkpoints/<step>`.

  Saves are synchronous: a run killed right after `save` returns has its checkpoint on
  disk, and orbax writes each step to a temporary folder that it renames only when
  complete, so a kill during a save never leaves a half-written step behind.
  """

  def __init__(self, workdir, max_to_keep=3):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False,
            cleanup_tmp_directories=True))

  def steps(self):
    return sorted(self.manager.all_steps())

  def save(self, step, state):
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
    self.manager.wait_until_finished()

  def restore(self, abstract_state, step=None):
    """Restores `step`, or the newest readable step; returns (state, step) or (None, None).

    `abstract_state` is a pytree of `jax.ShapeDtypeStruct` (with shardings), e.g. from
    `jax.eval_shape`, so arrays come back with the right shapes, dtypes and placement.
    """
    candidates = [step] if step is not None else self.steps()[::-1]
    for s in candidates:
      try:
        state = self.manager.restore(s, args=ocp.args.StandardRestore(abstract_state))
        return state, s
      except Exception as e:  # pylint: disable=broad-except
        if step is not None:
          raise
        logging.warning('checkpoint at step %d could not be read (%s: %s); trying an older one',
                        s, type(e).__name__, str(e).splitlines()[0] if str(e) else '')
        print(f'warning: checkpoint step {s} is unreadable, falling back to an older one')
    return None, None

  def close(self):
    self.manager.close()


def saved_steps(workdir):
  """The finished checkpoint steps in `workdir`, read from the folder names (orbax writes a
  step under a temporary name and renames it to the bare number when it is complete)."""
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def abstract(tree, sharding=None):
  """ShapeDtypeStructs of a pytree (optionally with a sharding), for restoring into."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or getattr(x, 'sharding', None)),
      tree)
