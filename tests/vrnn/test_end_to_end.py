"""VRNN from the command line: train, evaluate, resume exactly after SIGTERM, fail fast; one trace; 8 devices."""
import functools
import json
import signal
import time

import jax
import numpy as np
import pytest

from common import checkpoint
from common import metrics
from configs import vrnn as vrnn_configs
from tests import helpers
from vrnn import train

train_cmd = functools.partial(helpers.train_cmd, 'vrnn')


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  return helpers.train_smoke('vrnn', tmp_path_factory.mktemp('vrnn_smoke'))


def test_smoke_trains_checkpoints_and_evaluates(smoke_run):
  workdir, proc = smoke_run
  assert checkpoint.Checkpointer(str(workdir)).steps() == [15, 30]
  train_log = metrics.read(str(workdir), 'train')
  assert [r['step'] for r in train_log] == [10, 20, 30]
  assert train_log[-1]['loss'] < train_log[0]['loss']
  assert {'elbo', 'elbo_per_step', 'kl', 'log_px', 'grad_norm'} <= set(train_log[0])
  m = json.load(open(workdir / 'eval' / 'step_30' / 'metrics.json'))
  assert m['step'] == 30 and m['num_sequences'] == 16 and m['is_samples'] == 8
  assert m['log_likelihood'] > m['elbo'] - 1.0   # the estimate is above the bound, up to noise
  assert m['elbo'] == pytest.approx(m['log_px'] - m['kl'], rel=1e-5)
  assert m['elbo_per_step'] == pytest.approx(m['elbo'] / m['mean_length'], rel=1e-4)
  for png in ('samples.png', 'reconstructions.png', 'kl_per_step.png', 'curves.png'):
    assert (workdir / 'eval' / 'step_30' / png).stat().st_size > 5000, png
  assert '| log_likelihood |' in proc.stdout


def test_evaluate_cli_at_an_earlier_step(smoke_run):
  workdir, _ = smoke_run
  proc = helpers.run(helpers.cli('vrnn.evaluate', f'--workdir={workdir}', '--step=15'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.load(open(workdir / 'eval' / 'step_15' / 'metrics.json'))['step'] == 15


def test_sigterm_then_resume_matches_an_uninterrupted_run(tmp_path):
  args = ('--config.num_steps=60', '--config.checkpoint.every=10', '--config.eval_every=20',
          '--config.log_every=5', '--config.checkpoint.max_to_keep=10', '--config.eval_at_end=False')
  ref, work = tmp_path / 'ref', tmp_path / 'work'
  assert helpers.run(train_cmd(ref, *args)).returncode == 0
  proc = helpers.start(train_cmd(work, *args))
  t0 = time.time()
  while not (work / 'checkpoints' / '10').exists():
    assert proc.poll() is None and time.time() - t0 < 300, proc.communicate()
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  if proc.returncode == 0:
    pytest.skip('the run finished before the signal arrived')   # a very fast machine
  assert proc.returncode == 143, err[-2000:]
  stopped = int(out.split('checkpoint saved at step ')[1].split(';')[0])
  proc = helpers.run(train_cmd(work, *args))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'resuming {work} from step {stopped}' in proc.stdout
  cut = (stopped // 5 + 1) * 5   # the train record whose window the signal cut short
  drop = lambda rs: [r for r in rs if not (r['split'] == 'train' and r['step'] == cut)]
  assert drop(helpers.records(work)) == drop(helpers.records(ref))
  init = train.make_init(vrnn_configs.get_config('smoke'))[2]
  restore = lambda w: checkpoint.Checkpointer(str(w)).restore(
      checkpoint.abstract(jax.eval_shape(init, jax.random.PRNGKey(0))), 60)[0]
  jax.tree.map(np.testing.assert_array_equal, restore(work), restore(ref))


@pytest.mark.parametrize('override,message', [
    ('--config.model.output=beta', "error: config.model.output='beta' is invalid: allowed "
     "values are 'gmm', 'gauss', 'bernoulli'"),
    ('--config.model.output=bernoulli', "error: config.model.pen_bit=True is invalid: must be "
     "False with model.output='bernoulli' (every feature is already a bit)"),
    ('--config.data.source=iam', "error: config.data.path='' is invalid: set it to the IAM-OnDB "
     "folder holding lineStrokes/ (data.source=iam)"),
    ('--config.model.min_scale=0', 'error: config.model.min_scale=0.0 is invalid: must be > 0'),
])
def test_bad_config_fails_fast_in_one_line(tmp_path, override, message):
  proc = helpers.run(train_cmd(tmp_path / 'w', override), timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == message
  assert not (tmp_path / 'w').exists()


def test_missing_iam_folder_is_a_one_line_error(tmp_path):
  proc = helpers.run(train_cmd(tmp_path / 'w', '--config.data.source=iam',
                               f'--config.data.path={tmp_path / "nowhere"}'), timeout=60)
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and 'nowhere' in last


def test_train_step_compiles_once():
  task = train.make_task(vrnn_configs.get_config('smoke'))
  state, m = helpers.steps_tracing_once(task)
  assert int(state.step) == 3 and np.isfinite(float(m['loss']))


def test_sharded_step_on_8_devices_matches_one_device():
  helpers.assert_sharded_step_matches_one_device('vrnn')


def _write_iam_folder(root, num_lines):
  """IAM-OnDB-layout XML files of generated handwriting (absolute points, y growing downward)."""
  from vrnn import strokes   # pylint: disable=g-import-not-at-top
  lines = strokes.handwriting(jax.random.PRNGKey(3), num_lines, 128)
  for i, (x, m) in enumerate(zip(lines['x'], lines['mask'])):
    x = x[m > 0]
    xy = np.cumsum(x[:, :2], 0) * [20, -20] + [500, 2000]
    ends = np.flatnonzero(x[:, 2] > 0) + 1
    body = ''.join('<Stroke colour="black">' + ''.join(
        f'<Point x="{px:.0f}" y="{py:.0f}" time="0"/>' for px, py in s) + '</Stroke>'
                   for s in np.split(xy, ends) if len(s))
    form = f'a{i // 10:02d}-000u'
    path = root / 'lineStrokes' / form[:3] / form[:7] / f'{form}-{i % 10:02d}.xml'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<WhiteboardCaptureSession><StrokeSet>{body}</StrokeSet>'
                    '</WhiteboardCaptureSession>')


def _train_in_process(config, workdir):
  from common import loop   # pylint: disable=g-import-not-at-top
  from vrnn import evaluate   # pylint: disable=g-import-not-at-top
  config.num_steps, config.progress_bar, config.eval_every = 10, False, 5
  config.checkpoint.every = 10
  train.validate(config)
  _, status = loop.train(config, str(workdir), train.make_task(config))
  assert status == 'done'
  return evaluate.evaluate(str(workdir))


def test_iam_folder_trains_and_evaluates(tmp_path):
  _write_iam_folder(tmp_path / 'iam', 40)
  c = vrnn_configs.get_config('smoke')
  c.data.update(dict(source='iam', path=str(tmp_path / 'iam'), num_eval=8))
  m = _train_in_process(c, tmp_path / 'w')
  assert m['num_sequences'] == 8 and np.isfinite(m['elbo'])
  assert m['log_likelihood'] > m['elbo'] - 1.0
  assert (tmp_path / 'w' / 'eval' / 'step_10' / 'samples.png').exists()


def test_mnist_rows_train_and_evaluate_under_mock_data(tmp_path):
  import tensorflow_datasets as tfds   # pylint: disable=g-import-not-at-top
  c = vrnn_configs.get_config('mnist_rows')
  c.update(dict(batch_size=8))
  c.data.update(dict(num_train=16, num_eval=8))
  c.model.update(dict(h_dim=16, phi_x_dim=8, phi_z_dim=8, hidden_dim=16, z_dim=4))
  c.eval.update(dict(batch_size=8, is_samples=4, num_generate=2, examples=2))
  with tfds.testing.mock_data(num_examples=16):
    m = _train_in_process(c, tmp_path / 'w')
  assert m['num_sequences'] == 8 and m['mean_length'] == 28
  assert -28 * 28 * 2 < m['elbo'] < 0   # at most 2 nats per bit for a barely trained model
  assert (tmp_path / 'w' / 'eval' / 'step_10' / 'samples.png').stat().st_size > 3000
