"""SPS from the command line: train, checkpoint, evaluate, resume after kill -9 / SIGTERM, fail fast."""
import functools
import json
import signal
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from common import checkpoint
from common import metrics
from configs import sps as sps_configs
from sps import train
from tests import helpers

train_cmd = functools.partial(helpers.train_cmd, 'sps')


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  return helpers.train_smoke('sps', tmp_path_factory.mktemp('sps_smoke'))


def test_smoke_trains_checkpoints_and_evaluates(smoke_run):
  workdir, proc = smoke_run
  assert json.load(open(workdir / 'config.json'))['variant'] == 'smoke'
  assert checkpoint.Checkpointer(str(workdir)).steps() == [15, 30]
  train_log = metrics.read(str(workdir), 'train')
  assert [r['step'] for r in train_log] == [10, 20, 30]
  assert train_log[-1]['loss'] < train_log[0]['loss']
  assert {'image_pred/symmetry', 'z_pred/symmetry', 'grad_norm', 'teacher_prob'} <= set(train_log[0])
  out = workdir / 'eval' / 'step_30'
  m = json.load(open(out / 'metrics.json'))
  assert m['step'] == 30 and 0.0 <= m['linear_projection_mse'] <= 1.5
  assert {'r2_axis0', 'r2_axis1', 'r2_axis2', 'self_recon', 'image_pred'} <= set(m)
  for png in ('decoder_traversal.png', 'rollout.png', 'z_trajectories.png', 'curves.png'):
    assert (out / png).stat().st_size > 5000, png
  assert '| linear_projection_mse |' in proc.stdout


def test_evaluate_cli_at_an_earlier_step(smoke_run):
  workdir, _ = smoke_run
  proc = helpers.run(helpers.cli('sps.evaluate', f'--workdir={workdir}', '--step=15'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.load(open(workdir / 'eval' / 'step_15' / 'metrics.json'))['step'] == 15
  proc = helpers.run(helpers.cli('sps.evaluate', f'--workdir={workdir}', '--step=7'))
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      f'error: no checkpoint for step 7 in {workdir}; saved steps are [15, 30]')


def _wait_for_checkpoint(proc, workdir, step, timeout=300):
  path = Path(workdir) / 'checkpoints' / str(step)
  t0 = time.time()
  while not path.exists():
    assert proc.poll() is None, f'training exited before checkpoint {step}: {proc.communicate()}'
    assert time.time() - t0 < timeout
    time.sleep(0.02)


def test_kill9_and_sigterm_resume_exactly(tmp_path):
  args = ('--config.num_steps=150', '--config.checkpoint.every=15', '--config.eval_every=30',
          '--config.log_every=5', '--config.checkpoint.max_to_keep=20', '--config.eval_at_end=False')
  ref, work = tmp_path / 'ref', tmp_path / 'work'
  assert helpers.run(train_cmd(ref, *args)).returncode == 0

  proc = helpers.start(train_cmd(work, *args))
  _wait_for_checkpoint(proc, work, 30)
  proc.kill()                                   # kill -9: no chance to clean up
  proc.wait()
  assert max(checkpoint.Checkpointer(str(work)).steps()) < 150

  proc = helpers.start(train_cmd(work, *args))
  _wait_for_checkpoint(proc, work, 60)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 143, err[-2000:]
  assert 'resuming' in out
  stopped = int(out.split('checkpoint saved at step ')[1].split(';')[0])
  assert 60 <= stopped < 150 and max(checkpoint.Checkpointer(str(work)).steps()) == stopped

  proc = helpers.run(train_cmd(work, *args))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'resuming {work} from step {stopped}' in proc.stdout
  # Every record equals the uninterrupted run's, except the train record that averages the
  # window the SIGTERM cut short (its steps before the stop were never logged).
  cut = (stopped // 5 + 1) * 5
  drop = lambda rs: [r for r in rs if not (r['split'] == 'train' and r['step'] == cut)]
  assert drop(helpers.records(work)) == drop(helpers.records(ref))
  assert [r['step'] for r in helpers.records(work)] == [r['step'] for r in helpers.records(ref)]
  restore = lambda w: checkpoint.Checkpointer(str(w)).restore(
      checkpoint.abstract(jax.eval_shape(train.make_init(sps_configs.get_config('smoke'))[2],
                                         jax.random.PRNGKey(0))), 150)[0]
  jax.tree.map(np.testing.assert_array_equal, restore(work), restore(ref))


@pytest.mark.parametrize('override,message', [
    ('--config.optim.lr=-1', 'error: config.optim.lr=-1.0 is invalid: must be > 0'),
    ('--config.symmetry.spec=T:0,3', "error: config.symmetry.spec='T:0,3' is invalid: symmetry "
     "group 'T:0,3': dims must lie in 0..2 (z has 3 dims)"),
    ('--config.batch_size=6', 'error: config.batch_size=6 is invalid: must be divisible by 4 '
     '(batch/k sequences get k transforms each (symmetry.k))'),
    ('--config.data.scene=three_body', "error: config.data.scene='three_body' is invalid: "
     "allowed values are 'bouncing_ball', 'two_body'"),
    ('--config.modle.z_dim=2', "error: --config.modle.z_dim: config has no field 'modle'"),
])
def test_bad_config_fails_fast_in_one_line(tmp_path, override, message):
  override = override.replace('batch_size=6', 'batch_size=6 --config.symmetry.k=4').split()
  proc = helpers.run(train_cmd(tmp_path / 'w', *override), timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == message
  assert not (tmp_path / 'w').exists()


def test_train_step_compiles_once():
  config = sps_configs.get_config('smoke')
  task = train.make_task(config)
  state, m = helpers.steps_tracing_once(task)
  assert int(state.step) == 3 and np.isfinite(float(m['loss']))


def test_sharded_step_on_8_devices_matches_one_device():
  helpers.assert_sharded_step_matches_one_device('sps', batch_size=8)
