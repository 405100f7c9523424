"""vle from the command line and in process: train, evaluate, resume exactly, every variant,
real-image sources, fail fast, one trace, 8 devices."""
import functools
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from common import checkpoint
from common import config as cfg
from common import metrics
from configs import vle as configs
from tests import helpers
from vle import evaluate
from vle import train

train_cmd = functools.partial(helpers.train_cmd, 'vle')
PNGS = ('per_token.png', 'tokens_vs_entropy.png', 'tokens_0.png', 'tokens_1.png', 'masks.png',
        'training.png')


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  return helpers.train_smoke('vle', tmp_path_factory.mktemp('vle_smoke'))


def test_smoke_trains_checkpoints_and_evaluates(smoke_run):
  workdir, proc = smoke_run
  assert checkpoint.Checkpointer(str(workdir)).steps() == [10, 20]
  log = metrics.read(str(workdir), 'train')
  assert [r['step'] for r in log] == [5, 10, 15, 20]
  assert log[-1]['loss'] < log[0]['loss']
  assert {'aux_mse', 'final_mse', 'mask_binary', 'mask_empty', 'mask_previous',
          'mask_accumulated', 'baseline_mse', 'baseline_kl', 'tokens', 'grad_norm'} <= set(log[0])
  assert all(1 <= r['tokens'] <= 3 for r in log)
  m = json.load(open(workdir / 'eval' / 'step_20' / 'metrics.json'))
  for prefix in ('', 'baseline_'):
    for k in ('mse_1', 'mse_4', 'ssim_4', 'ari', 'fg_ari', 'reached_threshold',
              'median_tokens_to_threshold'):
      assert np.isfinite(m[prefix + k]), prefix + k
  assert 0 < m['mse_4'] < 1 and -1 <= m['ari'] <= 1 and abs(m['random_ari']) < 0.05
  assert m['step'] == 20 and 'generated scenes' in m['test_set']
  assert abs(m['params_baseline'] - m['params_vle']) / m['params_vle'] < 0.1
  for png in PNGS:
    assert (workdir / 'eval' / 'step_20' / png).stat().st_size > 5000, png
  assert '| mse_4 |' in proc.stdout
  assert '(eval.tokens + 1) means never reached' in proc.stdout   # the table's footnote


def test_evaluate_cli_at_an_earlier_step(smoke_run):
  workdir, _ = smoke_run
  proc = helpers.run(helpers.cli('vle.evaluate', f'--workdir={workdir}', '--step=10'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.load(open(workdir / 'eval' / 'step_10' / 'metrics.json'))['step'] == 10


def _small(variant='smoke', **model):
  c = configs.get_config(variant)
  # Evaluation runs once, from evaluate.evaluate, not also inside the loop.
  c.update(dict(num_steps=4, log_every=2, eval_every=100, eval_at_end=False, progress_bar=False,
                batch_size=4))
  c.checkpoint.every = 2
  c.data.size = 16
  c.model.update(dict(channels=(4, 8), memory=4, token_channels=2, decoder_channels=(8, 4),
                      saliency_features=4, **model))
  c.tokens.update(dict(train_max=3, mean_start=1.5, mean_end=3.0, ramp_steps=4))
  c.eval.update(dict(num_test=8, batch_size=4, tokens=3, ari_tokens=3, examples=1))
  return c


def _train(config, workdir):
  helpers.train_in_process(train, config, workdir)


def test_resume_matches_an_uninterrupted_run(tmp_path):
  """Scenes and token counts come from (seed, step) alone: stopping and resuming changes nothing."""
  c = _small('vanilla')   # the baseline's noise stream must resume too; masks add nothing here
  c.eval_every = 2   # an eval record at step 2 must survive the resume too
  helpers.assert_resume_matches_uninterrupted(train, c, tmp_path)


@pytest.mark.parametrize('variant,overrides', [
    ('vanilla', {'baseline.enabled': False}),
    ('inherent', {'data.background': 'textured', 'model.memory': 0}),
    ('saliency', {'model.saliency_memory': False, 'baseline.scale': 0.5}),
])
def test_every_variant_trains_and_evaluates(tmp_path, variant, overrides):
  c = _small(variant)
  helpers.set_fields(c, overrides)
  _train(c, tmp_path)
  m = evaluate.evaluate(str(tmp_path))
  assert any(k.startswith('baseline_') for k in m) == c.baseline.enabled
  assert all(np.isfinite(v) for v in m.values())
  assert {'mse_1', 'mse_3', 'ari', 'fg_ari', 'random_ari'} <= set(m)
  saved = json.load(open(tmp_path / 'eval' / 'step_4' / 'metrics.json'))
  assert saved['params_vle'] > 0
  for png in ('masks.png', 'tokens_0.png', 'per_token.png'):
    assert (tmp_path / 'eval' / 'step_4' / png).exists()


def test_folder_of_images_trains_and_evaluates_without_ari(tmp_path):
  rng = np.random.default_rng(0)
  (tmp_path / 'img').mkdir()
  for i in range(20):
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
        tmp_path / 'img' / f'{i}.jpg')
  c = _small('vanilla')
  c.data.update(dict(source='folder', folder=str(tmp_path / 'img')))
  _train(c, tmp_path / 'w')
  m = evaluate.evaluate(str(tmp_path / 'w'))
  assert 'ari' not in m and np.isfinite(m['mse_3'])
  saved = json.load(open(tmp_path / 'w' / 'eval' / 'step_4' / 'metrics.json'))
  assert saved['test_set'].startswith('2 images (every 10th image of')


def test_tfds_images_train_under_mock_data(tmp_path):
  c = _small('vanilla', )
  c.data.update(dict(source='tfds', tfds_name='cifar10'))
  c.eval.num_test = 4
  with tfds.testing.mock_data(num_examples=8):
    _train(c, tmp_path)
    m = evaluate.evaluate(str(tmp_path))
  assert np.isfinite(m['mse_1']) and 'ari' not in m


@pytest.mark.parametrize('override,message', [
    ('--config.model.kind=slots', "error: config.model.kind='slots' is invalid: allowed values "
     "are 'vanilla', 'saliency', 'inherent'"),
    ('--config.loss.final_weight=0.8', 'error: config.loss.final_weight=0.8 is invalid: must be '
     'in [0.0, 0.5]'),
    ('--config.data.size=36', 'error: config.data.size=36 is invalid: must be divisible by 8'),
    ('--config.data.source=tfds', "error: config.data.tfds_name='' is invalid: name a prepared"),
])
def test_bad_config_fails_fast_in_one_line(tmp_path, override, message):
  helpers.assert_cli_fails_in_one_line('vle', tmp_path / 'w', override, message)


@pytest.mark.parametrize('overrides,message', [
    ({'tokens.mean_end': 5.0}, r'must be in \[1, tokens.train_max=3\]'),
    ({'model.decoder_channels': (8,)}, 'needs 3 entries'),
    ({'data.shapes': ('circle', 'star')}, 'must be a non-empty subset'),
    ({'data.min_objects': 7}, 'must be <= data.max_objects'),
    ({'eval.ari_tokens': 9}, r'must be <= eval.tokens \(4\)'),
    ({'data.source': 'folder'}, 'set it to a folder of images'),
    ({'batch_size': 6}, 'must be divisible by 4'),
])
def test_validate_names_the_field(overrides, message):
  c = configs.get_config('smoke')
  helpers.set_fields(c, overrides)
  with pytest.raises(cfg.ConfigError, match=message):
    train.validate(c, num_devices=4)


def test_default_variants_validate():
  for v in configs.VARIANTS:
    train.validate(configs.get_config(v), num_devices=1)


def test_train_step_compiles_once_and_batches_are_fresh():
  c = _small('vanilla')
  c.baseline.enabled = False
  task = train.make_task(c)
  state, m = helpers.steps_tracing_once(task)
  assert int(state.step) == 3 and np.isfinite(float(m['loss']))
  a, b = task.train_batch(0), task.train_batch(1)
  assert a['image'].shape == (4, 16, 16, 3) and not np.allclose(a['image'], b['image'])
  np.testing.assert_array_equal(a['image'], task.train_batch(0)['image'])
  np.testing.assert_array_equal(a['count'], task.train_batch(0)['count'])


def test_sharded_step_on_8_devices_matches_one_device():
  helpers.assert_sharded_step_matches_one_device('vle')
