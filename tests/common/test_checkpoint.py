"""Checkpoints: asynchronous saves that survive donation and kill -9, unreadable steps set aside."""
import gc
import os
import warnings
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import checkpoint
from tests import helpers

BIG = 16_000_000   # floats (64 MB): a write that takes long enough to be caught in flight


def _state(seed, n=BIG):
  return {'w': jax.random.normal(jax.random.PRNGKey(seed), (n,)), 'step': jnp.asarray(seed)}


def test_async_save_keeps_the_saved_values_when_the_next_step_donates_them(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  state = _state(1)
  expected = jax.device_get(state)
  ckpt.save(1, state)
  in_flight = ckpt.manager.is_saving_in_progress()
  # the train step donates its input: the buffers the save copied from are overwritten
  state = jax.jit(lambda s: jax.tree.map(lambda x: x * 0 + 7, s), donate_argnums=0)(state)
  ckpt.close()
  assert in_flight, 'the save finished before it returned: not asynchronous'
  restored, step = checkpoint.Checkpointer(str(tmp_path)).restore(
      checkpoint.abstract(jax.eval_shape(lambda: _state(1))))
  assert step == 1
  jax.tree.map(np.testing.assert_array_equal, restored, expected)


KILL_DURING_SAVE = textwrap.dedent('''
    import json, os, signal, sys
    import jax
    from common import checkpoint
    from tests.common.test_checkpoint import _state
    ckpt = checkpoint.Checkpointer(sys.argv[1])
    ckpt.save(1, _state(1))
    ckpt.wait()
    ckpt.save(2, _state(2))
    with open(sys.argv[2], 'w') as f:   # what was on disk when the kill came
      json.dump({'in_flight': ckpt.manager.is_saving_in_progress(),
                 'listing': sorted(os.listdir(ckpt.directory))}, f)
    os.kill(os.getpid(), signal.SIGKILL)
''')


def test_kill9_during_an_async_save_leaves_only_complete_steps(tmp_path):
  import json   # pylint: disable=g-import-not-at-top
  work, seen = tmp_path / 'w', tmp_path / 'seen.json'
  proc = subprocess.run([sys.executable, '-c', KILL_DURING_SAVE, str(work), str(seen)],
                        cwd=helpers.REPO, env=helpers.ENV, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == -9, proc.stderr[-2000:]
  at_kill = json.load(open(seen))
  assert at_kill['in_flight'] and '2' not in at_kill['listing'], at_kill
  ckpt = checkpoint.Checkpointer(str(work))
  assert ckpt.steps() == [1]                 # step 2 never became a step folder
  restored, step = ckpt.restore(checkpoint.abstract(jax.eval_shape(lambda: _state(1))))
  assert step == 1
  jax.tree.map(np.testing.assert_array_equal, restored, jax.device_get(_state(1)))
  ckpt.save(2, _state(2))                    # and the step can be written again
  ckpt.close()
  assert sorted(os.listdir(work / 'checkpoints')) == ['1', '2']


def _corrupt(step_dir, metadata):
  for root, _, files in os.walk(step_dir):
    for f in files:
      if metadata or not f.startswith('_CHECKPOINT_METADATA'):
        with open(os.path.join(root, f), 'wb') as fh:
          fh.write(b'garbage')


@pytest.mark.parametrize('metadata', [False, True])
def test_an_unreadable_step_is_set_aside_for_training_and_refused_for_evaluation(
    tmp_path, capfd, caplog, metadata):
  small = lambda s: _state(s, n=10)
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  for s in (1, 2):
    ckpt.save(s, small(s))
  ckpt.close()
  _corrupt(tmp_path / 'checkpoints' / '2', metadata)
  capfd.readouterr()
  target = checkpoint.abstract(jax.eval_shape(lambda: small(1)))
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  with pytest.raises(checkpoint.UnreadableCheckpointError, match='checkpoint step 2 .* unreadable'):
    ckpt.restore(target)                     # evaluation: say so, move nothing
  assert ckpt.steps() == [1, 2]
  restored, step = ckpt.restore(target, set_aside=True)
  assert step == 1 and int(restored['step']) == 1
  assert ckpt.steps() == [1]
  assert os.listdir(tmp_path / checkpoint.UNREADABLE) == ['2']   # kept, not deleted
  out, err = capfd.readouterr()
  assert err == '' and out.startswith('warning: checkpoint step 2 is unreadable (')   # one line
  assert not caplog.records, [r.getMessage()[:100] for r in caplog.records]   # nor orbax's logs
  ckpt.save(2, small(2))                     # the step is written again
  ckpt.close()
  restored, step = checkpoint.Checkpointer(str(tmp_path)).restore(target)
  assert step == 2 and int(restored['step']) == 2


class _Suspend:
  def __await__(self):
    yield


def _abandoned_read(name):
  """A started read coroutine that raises when it is closed unfinished, as orbax's do when
  another array of the same step has failed; garbage-collecting it reports through
  sys.unraisablehook."""
  async def read():
    try:
      await _Suspend()
    except GeneratorExit:
      raise Exception('Encountered error while reading array index') from None   # pylint: disable=broad-exception-raised
  read.__name__ = read.__qualname__ = name
  coro = read()
  coro.send(None)
  return coro


def test_the_echoes_of_a_failed_restore_are_dropped_and_other_unraisable_errors_kept(
    monkeypatch):
  seen = []
  monkeypatch.setattr(sys, 'unraisablehook', lambda u: seen.append(u.object.__name__))
  monkeypatch.setattr(sys, 'excepthook', sys.excepthook)
  checkpoint._ignore_orphaned_reads('/w/checkpoints')
  checkpoint._ignore_orphaned_reads('/w/checkpoints')        # installed once, not stacked
  for name in ('_read_array_index_and_device_put', 'user_coroutine'):
    coro = _abandoned_read(name)
    del coro
    gc.collect()
  assert seen == ['user_coroutine']


def test_the_reads_of_a_failed_restore_that_never_started_do_not_warn(monkeypatch):
  monkeypatch.setattr(warnings, 'filters', list(warnings.filters))   # undone after the test
  monkeypatch.setattr(sys, 'unraisablehook', sys.unraisablehook)
  monkeypatch.setattr(sys, 'excepthook', sys.excepthook)
  checkpoint._ignore_orphaned_reads('/w/checkpoints')

  async def _read_array_index_and_device_put():
    pass

  async def user_coroutine():
    pass

  with warnings.catch_warnings(record=True) as caught:
    for make in (_read_array_index_and_device_put, user_coroutine):
      coro = make()
      del coro
      gc.collect()
  assert [str(w.message) for w in caught] == ["coroutine 'test_the_reads_of_a_failed_restore_that_"
                                              "never_started_do_not_warn.<locals>.user_coroutine' "
                                              "was never awaited"]


def test_asyncio_logs_of_a_failed_restores_reads_are_dropped_and_other_logs_kept(monkeypatch):
  import logging  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sys, 'unraisablehook', sys.unraisablehook)
  monkeypatch.setattr(sys, 'excepthook', sys.excepthook)
  logger = logging.getLogger('asyncio')
  monkeypatch.setattr(logger, 'filters', list(logger.filters))
  checkpoint._ignore_orphaned_reads('/w/checkpoints')
  kept = []
  handler = logging.Handler()
  handler.emit = lambda record: kept.append(record.getMessage().split('\n')[0])
  logger.addHandler(handler)
  try:
    for first, exception in [   # the variants seen when a data file of /w was truncated
        ('Task exception was never retrieved', "Exception(\"... 'path': '/w/checkpoints/30/'\")"),
        ('_GatheringFuture exception was never retrieved', 'Exception("/w/checkpoints/30")'),
        ('Future exception was never retrieved', 'ValueError(\'at "/w/checkpoints/30/"\')'),
        ('Task exception was never retrieved', 'ValueError("/elsewhere/data")'),  # not ours
        ('Executing <Task> took 0.5 seconds', '/w/checkpoints')]:                # not an echo
      logger.error(f'{first}\nfuture: <Task finished exception={exception}>')
  finally:
    logger.removeHandler(handler)
  assert kept == ['Task exception was never retrieved', 'Executing <Task> took 0.5 seconds']


def test_a_storage_threads_late_callback_into_the_closed_loop_is_not_printed(monkeypatch):
  import asyncio  # pylint: disable=g-import-not-at-top
  seen = []
  monkeypatch.setattr(sys, 'unraisablehook', sys.unraisablehook)
  monkeypatch.setattr(sys, 'excepthook', lambda kind, value, tb: seen.append(str(value)))
  checkpoint._ignore_orphaned_reads('/w/checkpoints')
  loop = asyncio.new_event_loop()
  loop.close()
  for call in (lambda: loop.call_soon_threadsafe(print), lambda: loop.run_until_complete(None)):
    try:
      call()
    except RuntimeError:
      # as PyErr_Print does for an error in a callback from C: the traceback starts in asyncio
      kind, value, tb = sys.exc_info()
      while tb.tb_frame.f_code.co_name not in ('call_soon_threadsafe', 'run_until_complete'):
        tb = tb.tb_next
      sys.excepthook(kind, value, tb)
  # the second starts in run_until_complete: a user's error, printed
  assert seen == ['Event loop is closed']
