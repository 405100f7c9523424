"""unsup_video from the command line and in process: train, evaluate, resume exactly, every
config and switch, the standard test set file, fail fast, one trace, 8 devices."""
import functools
import json

import numpy as np
import pytest

from common import checkpoint
from common import config as cfg
from common import metrics
from configs import unsup_video as configs
from tests import helpers
from unsup_video import evaluate
from unsup_video import train

train_cmd = functools.partial(helpers.train_cmd, 'unsup_video')
METRICS = {f'{b}_{m}' for b in ('recon', 'future') for m in ('cross_entropy', 'mse', 'ssim')}


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  return helpers.train_smoke('unsup_video', tmp_path_factory.mktemp('uv_smoke'))


def test_smoke_trains_checkpoints_and_evaluates(smoke_run):
  workdir, proc = smoke_run
  assert checkpoint.Checkpointer(str(workdir)).steps() == [10, 20]
  log = metrics.read(str(workdir), 'train')
  assert [r['step'] for r in log] == [5, 10, 15, 20]
  assert log[-1]['loss'] < log[0]['loss']
  assert {'recon_loss', 'future_loss', 'future_cross_entropy', 'grad_norm'} <= set(log[0])
  m = json.load(open(workdir / 'eval' / 'step_20' / 'metrics.json'))
  assert METRICS <= set(m) and m['num_sequences'] == 16 and m['step'] == 20
  # Conditional: the teacher-forced score is reported too, and the first frame is the same.
  assert m['future_cross_entropy_teacher_forced'] > 0
  assert 'generated' in m['test_set']
  assert 0 < m['future_ssim'] < 1 and m['future_mse'] > 0 and m['future_cross_entropy'] > 0
  for png in ('strip_0.png', 'strip_1.png', 'per_frame.png', 'curves.png'):
    assert (workdir / 'eval' / 'step_20' / png).stat().st_size > 5000, png
  assert '| future_cross_entropy |' in proc.stdout


def test_evaluate_cli_at_an_earlier_step(smoke_run):
  workdir, _ = smoke_run
  proc = helpers.run(helpers.cli('unsup_video.evaluate', f'--workdir={workdir}', '--step=10'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.load(open(workdir / 'eval' / 'step_10' / 'metrics.json'))['step'] == 10


def _small(variant='smoke', **model):
  c = configs.get_config(variant)
  # Evaluation runs once, from evaluate.evaluate, not also inside the loop.
  c.update(dict(num_steps=4, log_every=2, eval_every=100, eval_at_end=False, progress_bar=False,
                batch_size=4))
  c.checkpoint.every = 2
  c.data.update(dict(digits='embedded', canvas=32, num_frames=6, num_input=3))
  c.model.update(dict(hidden=16, **model))
  c.eval.update(dict(num_test=8, batch_size=4, examples=1))
  return c


def _train(config, workdir):
  helpers.train_in_process(train, config, workdir)


def test_resume_matches_an_uninterrupted_run(tmp_path):
  """Fresh sequences come from (seed, step) alone, so stopping and resuming changes nothing."""
  c = _small()
  c.eval_every = 2   # an eval record at step 2 must survive the resume too
  helpers.assert_resume_matches_uninterrupted(train, c, tmp_path)


@pytest.mark.parametrize('variant,overrides', [
    ('future', {}),
    ('autoencoder', {'model.conditional': False, 'model.layers': 2}),
    ('conv', {'model.conv_channels': (4, 8), 'conv_impl': 'matmul'}),
    ('smoke', {'data.range': 'signed', 'model.output_activation': 'tanh', 'loss.kind': 'mse',
               'optim.name': 'momentum', 'optim.lr': 1e-4}),
    ('smoke', {'model.output_activation': 'linear', 'loss.kind': 'mse', 'optim.name': 'rmsprop',
               'model.dtype': 'bfloat16'}),
])
def test_every_config_and_switch_trains_and_evaluates(tmp_path, variant, overrides):
  c = _small(variant)
  helpers.set_fields(c, overrides)
  _train(c, tmp_path)
  m = evaluate.evaluate(str(tmp_path))
  branches = {'future': ['future'], 'autoencoder': ['recon']}.get(variant, ['recon', 'future'])
  assert {k.split('_')[0] for k in m} == set(branches)
  assert any('teacher_forced' in k for k in m) == c.model.conditional
  assert all(np.isfinite(v) for v in m.values())
  assert (tmp_path / 'eval' / 'step_4' / 'strip_0.png').exists()


def test_standard_test_set_from_npy(tmp_path):
  rng = np.random.default_rng(0)
  seqs = rng.integers(0, 256, (20, 6, 64, 64), dtype=np.uint8)   # time-major, as released
  np.save(tmp_path / 'mnist_test_seq.npy', seqs)
  c = _small()
  c.data.update(dict(canvas=64, num_frames=20, num_input=10))
  c.eval.update(dict(test_source='npy', test_path=str(tmp_path / 'mnist_test_seq.npy'),
                     num_test=4))
  _train(c, tmp_path / 'w')
  m = evaluate.evaluate(str(tmp_path / 'w'))
  saved = json.load(open(tmp_path / 'w' / 'eval' / 'step_4' / 'metrics.json'))
  assert saved['num_sequences'] == 4 and saved['test_set'].endswith('mnist_test_seq.npy')
  # The strip shows the file's frames: its first input frame is the file's sequence 0, frame 0.
  ev = train.Evaluator(c, train.make_model(c))
  np.testing.assert_allclose(ev.frames[0, 0], seqs[0, 0] / 255.0, atol=1e-7)
  assert np.isfinite(m['future_cross_entropy'])


@pytest.mark.parametrize('override,message', [
    ('--config.model.output_activation=linear', "error: config.loss.kind='bce' is invalid: needs "
     "model.output_activation='sigmoid' and data.range='unit' (Bernoulli targets in (0, 1)); got "
     "'linear' and 'unit': use loss.kind='mse'"),
    ('--config.data.range=signed', "error: config.loss.kind='bce' is invalid"),
    ('--config.data.num_input=8', 'error: config.data.num_input=8 is invalid: must be < '
     'data.num_frames (8): the rest are the future'),
    ('--config.optim.name=lamb', "error: config.optim.name='lamb' is invalid: allowed values are "
     "'adam', 'rmsprop', 'momentum'"),
])
def test_bad_config_fails_fast_in_one_line(tmp_path, override, message):
  helpers.assert_cli_fails_in_one_line('unsup_video', tmp_path / 'w', override, message)


@pytest.mark.parametrize('overrides,message', [
    ({'data.range': 'signed', 'loss.kind': 'mse'}, 'cannot fit data.range'),
    ({'model.output_activation': 'tanh', 'loss.kind': 'mse'}, "use 'sigmoid', 'linear'"),
    ({'model.kind': 'conv', 'data.canvas': 36}, 'must be divisible by 8'),
    ({'eval.test_source': 'npy'}, 'must be 64 to score the standard test set'),
    ({'loss.future_weight': 0.0}, "must be > 0 with model.mode='composite'"),
    ({'batch_size': 6}, 'must be divisible by 4'),
])
def test_validate_names_the_field(overrides, message):
  c = configs.get_config('smoke')
  helpers.set_fields(c, overrides)
  with pytest.raises(cfg.ConfigError, match=message.replace('(', r'\(').replace(')', r'\)')):
    train.validate(c, num_devices=4)


def test_default_variants_validate():
  for v in configs.VARIANTS:
    train.validate(configs.get_config(v), num_devices=1)


def test_train_step_compiles_once_and_batches_are_fresh():
  task = train.make_task(_small())
  state, m = helpers.steps_tracing_once(task)
  assert int(state.step) == 3 and np.isfinite(float(m['loss']))
  a, b = task.train_batch(0)['frames'], task.train_batch(1)['frames']
  assert a.shape == (4, 6, 32, 32) and not np.allclose(a, b)
  np.testing.assert_array_equal(a, task.train_batch(0)['frames'])


def test_sharded_step_on_8_devices_matches_one_device():
  helpers.assert_sharded_step_matches_one_device('unsup_video')
