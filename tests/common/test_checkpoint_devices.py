"""Runs move between device counts: checkpoints saved on 8 devices resume on 1 and back, and a
batch that does not split over the devices is refused before anything runs.

Each leg is its own `python -m vrnn.main` process, since the device count is fixed when jax
starts: the checkpoint is what carries the run across. Both resumed runs end where a
1-device run without a break ends (allclose: 8 devices reduce the batch in another order).
"""
import importlib

import jax
import numpy as np
import pytest

from common import config as cfg
from common import loop
from configs import vrnn as vrnn_configs
from tests import helpers
from vrnn import train as vrnn_train

EIGHT = {'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
STEPS = 30   # the smoke config's; a checkpoint at 15 is the break


def _train(workdir, steps, env=None):
  cmd = helpers.train_cmd('vrnn', str(workdir), f'--config.num_steps={steps}',
                          '--config.eval_at_end=False', '--config.eval_every=1000')
  proc = helpers.run_env(cmd, env or {})
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def _final(workdir):
  """The parameters and Adam moments of the newest checkpoint, on this process's device."""
  config = vrnn_configs.get_config('smoke')
  state, step = loop.restore(str(workdir), vrnn_train.make_init(config)[2], config.seed)
  assert step == STEPS
  return jax.device_get((state.params, state.opt_state))


def _last_loss(workdir):
  """The mean loss of steps 21-30, logged at 30 (a break at 15 adds a record there)."""
  last = [r for r in helpers.records(workdir) if r['split'] == 'train'][-1]
  assert last['step'] == STEPS
  return last['loss']


@pytest.fixture(scope='module')
def ref(tmp_path_factory):
  """A 1-device run without a break."""
  workdir = tmp_path_factory.mktemp('ref')
  _train(workdir, STEPS)
  return workdir


@pytest.mark.parametrize('first,then', [(EIGHT, {}), ({}, EIGHT)], ids=['8_to_1', '1_to_8'])
def test_checkpoint_moves_between_device_counts(tmp_path, ref, first, then):
  work = tmp_path / 'work'
  _train(work, STEPS // 2, first)
  out = _train(work, STEPS, then)
  assert f'resuming {work} from step {STEPS // 2}' in out
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               _final(work), _final(ref))
  np.testing.assert_allclose(_last_loss(work), _last_loss(ref), rtol=1e-4)


@pytest.mark.parametrize('project', ['sps', 'vrnn', 'unsup_video', 'vle', 'selfsup'])
def test_a_batch_that_does_not_split_over_the_devices_is_refused(project):
  train = importlib.import_module(f'{project}.train')
  config = importlib.import_module(f'configs.{project}').get_config('smoke')
  train.validate(config, num_devices=1)
  config.batch_size = 4 * 3 * 5 * 7 + 1   # odd, and no symmetry.k or group count divides it
  with pytest.raises(cfg.ConfigError, match=r'must be divisible by 8 \(the batch is split over 8 devices\)'):
    train.validate(config, num_devices=8)
