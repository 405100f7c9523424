"""Orbax checkpoints of one train-state pytree: saved asynchronously, unreadable steps set aside."""
import contextlib
import logging as std_logging
import os
import sys
import warnings

import jax
import orbax.checkpoint as ocp
from absl import logging

UNREADABLE = 'checkpoints_unreadable'   # where an unreadable step is moved, beside checkpoints/


class UnreadableCheckpointError(RuntimeError):
  pass


class Checkpointer:
  """Saves and restores the whole train state under `workdir/checkpoints/<step>`.

  Saves are asynchronous: `save` returns once the arrays are copied off the accelerator and
  a thread writes them while training goes on; the next `save` and `close` wait for it. Orbax
  writes each step to a temporary folder that it renames only when complete, so a kill during
  a save never leaves a half-written step behind (the temporary folder is removed at the next
  start).
  """

  def __init__(self, workdir, max_to_keep=3, async_save=True):
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, 'checkpoints')
    with _orbax_silent():   # it logs an error for each step whose metadata it cannot parse
      self.manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(
              max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save,
              cleanup_tmp_directories=True))

  def steps(self):
    return sorted(self.manager.all_steps())

  def save(self, step, state):
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def wait(self):
    """Blocks until the save in flight (if any) is on disk."""
    self.manager.wait_until_finished()

  def restore(self, abstract_state, step=None, set_aside=False):
    """Restores `step`, or the newest step; returns (state, step), or (None, None) if none.

    `abstract_state` is a pytree of `jax.ShapeDtypeStruct` (with shardings), e.g. from
    `jax.eval_shape`, so arrays come back with the right shapes, dtypes and placement.
    An unreadable step raises UnreadableCheckpointError; with `set_aside` (training) it is
    moved to `workdir/checkpoints_unreadable/` instead, never deleted, so that training
    goes on from the next older step and writes the step again.
    """
    candidates = [step] if step is not None else self.steps()[::-1]
    _ignore_orphaned_reads(self.directory)   # before: a failed read's echoes can precede it
    for s in candidates:
      try:
        with _orbax_silent():   # its failure is reported below, in one line
          return self.manager.restore(s, args=ocp.args.StandardRestore(abstract_state)), s
      except Exception as e:  # pylint: disable=broad-except
        reason = _first_line(e)
        if not set_aside:
          raise UnreadableCheckpointError(
              f'checkpoint step {s} in {self.directory} is unreadable ({reason})') from None
        moved = self._set_aside(s)
        print(f'warning: checkpoint step {s} is unreadable ({reason}); moved it to {moved} '
              'and trying an older one')
    return None, None

  def _set_aside(self, step):
    target = os.path.join(self.workdir, UNREADABLE, str(step))
    n = 1
    while os.path.exists(target):
      target, n = os.path.join(self.workdir, UNREADABLE, f'{step}.{n}'), n + 1
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(os.path.join(self.directory, str(step)), target)
    self.manager.reload()
    return os.path.relpath(target, os.getcwd()) if target.startswith(os.getcwd()) else target

  def close(self):
    self.manager.close()   # waits for the save in flight


@contextlib.contextmanager
def _orbax_silent():
  old = logging.get_verbosity()
  logging.set_verbosity(logging.FATAL)
  try:
    yield
  finally:
    logging.set_verbosity(old)


_READ_DIRECTORIES = set()   # the checkpoint folders restored from in this process


def _ignore_orphaned_reads(directory):
  """Keeps the rest of a failed restore off stderr.

  When one array of a step cannot be read, orbax raises at once and leaves that step's other
  reads pending; each of them fails later (when it is garbage-collected, or when its storage
  thread finds the event loop closed) and Python prints its traceback through
  sys.unraisablehook or, called from TensorStore's thread, sys.excepthook, warns that it was
  never awaited, or asyncio logs that its exception was never retrieved, at a moment that
  varies from run to run (and with which arrays share the damaged file). The failure was
  already reported in one line, so those echoes are dropped; any other error is still printed.
  """
  _READ_DIRECTORIES.add(directory)
  std_logging.getLogger('asyncio').addFilter(_not_an_orphaned_read)   # once: filters are a set
  # the reads that never started are reported as a RuntimeWarning instead
  warnings.filterwarnings('ignore', category=RuntimeWarning,
                          message=r"coroutine '(.*\.)?_read_array_index_and_device_put' was never")
  if not getattr(sys.unraisablehook, 'drops_orphaned_reads', False):   # installed once
    sys.unraisablehook = _dropping_orphaned_reads(sys.unraisablehook)
  if not getattr(sys.excepthook, 'drops_orphaned_reads', False):
    sys.excepthook = _dropping_late_callbacks(sys.excepthook)


def _dropping_orphaned_reads(previous):
  def hook(unraisable):
    where = getattr(unraisable.object, '__name__', '')
    closed_loop = (isinstance(unraisable.exc_value, RuntimeError)
                   and str(unraisable.exc_value) == 'Event loop is closed')
    if where != '_read_array_index_and_device_put' and not closed_loop:
      previous(unraisable)
  hook.drops_orphaned_reads = True
  return hook


def _dropping_late_callbacks(previous):
  def excepthook(kind, value, tb):
    # a storage thread's callback into the closed loop: its traceback starts in asyncio
    late_callback = (kind is RuntimeError and str(value) == 'Event loop is closed'
                     and tb is not None and tb.tb_frame.f_code.co_name == 'call_soon_threadsafe')
    if not late_callback:
      previous(kind, value, tb)
  excepthook.drops_orphaned_reads = True
  return excepthook


def _not_an_orphaned_read(record):
  message = record.getMessage()
  # 'Task exception was never retrieved', '_GatheringFuture exception ...', 'Future exception ...':
  # a read of one of our checkpoints (its error names the folder)
  return not (message.split('\n', 1)[0].endswith('exception was never retrieved')
              and any(d in message for d in _READ_DIRECTORIES))


def _first_line(error):
  """The gist of a storage error: its first line, without TensorStore's object dump."""
  text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  text = text.split(' See full TensorStore details')[0]
  return text if len(text) <= 160 else text[:157] + '...'


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
