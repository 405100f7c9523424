"""selfsup from the command line and in process: pretext train + evaluate, fine-tune from it,
resume exactly, every task and head, Imagewang under a TFDS mock, fail fast, one trace, 8 devices."""
import functools
import json

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from common import checkpoint
from common import config as cfg
from common import metrics
from configs import selfsup as configs
from selfsup import evaluate
from selfsup import train
from tests import helpers

train_cmd = functools.partial(helpers.train_cmd, 'selfsup')
PNGS = ('confusion.png', 'mistakes.png', 'grad_norms.png', 'examples.png', 'training.png')


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  return helpers.train_smoke('selfsup', tmp_path_factory.mktemp('selfsup_smoke'))


def test_smoke_trains_checkpoints_and_evaluates(smoke_run):
  workdir, proc = smoke_run
  assert checkpoint.Checkpointer(str(workdir)).steps() == [10, 20]
  log = metrics.read(str(workdir), 'train')
  assert [r['step'] for r in log] == [5, 10, 15, 20]
  assert {'loss', 'accuracy', 'grad_norm', 'param_norm', 'update_norm'} <= set(log[0])
  m = json.load(open(workdir / 'eval' / 'step_20' / 'metrics.json'))
  for k in ('knn_accuracy', 'probe_accuracy', 'task_loss', 'task_accuracy'):
    assert np.isfinite(m[k]), k
  assert 0 <= m['knn_accuracy'] <= 1 and m['task'] == 'mixup' and m['step'] == 20
  assert 'synthetic shapes' in m['data']
  assert set(m['grad_norms']) >= {'encoder/Conv_0', 'head/MLP_0/Dense_0'}
  assert all(v > 0 for v in m['grad_norms'].values())
  for png in PNGS:
    assert (workdir / 'eval' / 'step_20' / png).stat().st_size > 5000, png
  assert '| knn_accuracy |' in proc.stdout


def test_evaluate_cli_at_an_earlier_step(smoke_run):
  workdir, _ = smoke_run
  proc = helpers.run(helpers.cli('selfsup.evaluate', f'--workdir={workdir}', '--step=10'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.load(open(workdir / 'eval' / 'step_10' / 'metrics.json'))['step'] == 10


def test_finetune_cli_from_the_pretext_run(smoke_run, tmp_path):
  src, _ = smoke_run
  proc = helpers.run(helpers.cli(
      'selfsup.main', '--config=configs/selfsup.py:finetune', f'--workdir={tmp_path}',
      '--config.progress_bar=False', f'--config.finetune.init_from={src}',
      # the smoke config's data and encoder
      '--config.num_steps=6', '--config.batch_size=16', '--config.eval_every=100',
      '--config.checkpoint.every=6', '--config.data.size=16', '--config.data.num_labelled=100',
      '--config.data.num_val=100', '--config.data.num_unlabelled=200',
      '--config.model.widths=(8,16)', '--config.model.blocks=(1,1)',
      '--config.eval.probe_steps=20', '--config.eval.knn_k=5'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'encoder restored from {src} (step 20)' in proc.stdout
  m = json.load(open(tmp_path / 'eval' / 'step_6' / 'metrics.json'))
  assert m['init_from'] == str(src) and 0 <= m['classifier_accuracy'] <= 1
  assert 'task_loss' not in m


def test_resume_matches_an_uninterrupted_run(tmp_path, small):
  """Batches come from (seed, step) alone and BatchNorm statistics are checkpointed: stopping
  and resuming changes nothing."""
  c = small('mixup')
  c.eval_every = 2   # an eval record at step 2 must survive the resume too
  helpers.assert_resume_matches_uninterrupted(
      _ResumeAdapter, c, tmp_path)


class _ResumeAdapter:
  """The train module as helpers expects it (make_init(config) -> (.., .., init_state))."""
  validate = staticmethod(train.validate)
  make_task = staticmethod(train.make_task)

  @staticmethod
  def make_init(config):
    return train.make_init(config, train.datasets_num_classes(config))


@pytest.mark.parametrize('variant,fields', [
    ('scale', {'pretext.target': 'weights', 'head.kind': 'dot'}),
    ('mixup', {'loss.kind': 'margin', 'head.kind': 'cosine', 'pretext.num_candidates': 4,
               'pretext.num_mixed': 3, 'model.norm': 'batch'}),
    ('quadrant', {}),
    ('patchwork', {'pretext.patch_size': 6}),
    ('simclr', {'augment.grayscale': 0.5}),
])
def test_every_task_trains_and_evaluates(tmp_path, variant, fields, small):
  c = small(variant, **fields)
  helpers.train_in_process(train, c, tmp_path)
  m = evaluate.evaluate(str(tmp_path))
  assert all(np.isfinite(v) for v in m.values())
  assert {'knn_accuracy', 'probe_accuracy', 'task_loss', 'task_accuracy'} == set(m)
  for png in PNGS:
    assert (tmp_path / 'eval' / 'step_4' / png).exists()


def test_imagewang_with_an_unsup_folder_trains_under_a_tfds_mock(tmp_path, small):
  rng = np.random.default_rng(0)
  (tmp_path / 'unsup').mkdir()
  for i in range(6):
    Image.fromarray(rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)).save(
        tmp_path / 'unsup' / f'{i}.JPEG')
  c = small('mixup', **{'data.source': 'imagewang', 'data.unsup_folder': str(tmp_path / 'unsup'),
                         'data.num_images': 12})
  with tfds.testing.mock_data(num_examples=12):
    data = train.datasets(c)
    assert data['num_classes'] == 20 and len(data['unlabelled']) == 12 + 6
    assert data['train'][0].shape == (12, 16, 16, 3)
    helpers.train_in_process(train, c, tmp_path / 'w')
    m = evaluate.evaluate(str(tmp_path / 'w'))
  assert np.isfinite(m['knn_accuracy'])
  saved = json.load(open(tmp_path / 'w' / 'eval' / 'step_4' / 'metrics.json'))
  assert saved['data'].startswith('TFDS imagewang/160px (12 train, 12 validation, 18 unlabelled')


@pytest.mark.parametrize('override,message', [
    ('--config.task=rotation', "error: config.task='rotation' is invalid: allowed values are "
     "'mixup', 'scale', 'quadrant', 'patchwork', 'simclr', 'classify'"),
    ('--config.pretext.num_mixed=4', 'error: config.pretext.num_mixed=4 is invalid: must be <= '
     'pretext.num_candidates (3)'),
    ('--config.finetune.init_from=/no/such/run', 'error: config.finetune.init_from='),
])
def test_bad_config_fails_fast_in_one_line(tmp_path, override, message):
  helpers.assert_cli_fails_in_one_line('selfsup', tmp_path / 'w', override, message)


@pytest.mark.parametrize('variant,overrides,message', [
    ('mixup', {'pretext.target': 'weights', 'loss.kind': 'bce'},
     "with pretext.target='weights' allowed values are 'mse', 'auto'"),
    ('mixup', {'loss.kind': 'mse'}, "allowed values are 'bce', 'margin', 'auto'"),
    ('mixup', {'head.kind': 'bilinear'}, "allowed values are 'dot', 'mlp', 'cosine'"),
    ('patchwork', {'pretext.patch_size': 16}, r'must be smaller than data.size \(16\)'),
    ('mixup', {'model.blocks': (1,)}, 'needs one positive block count per stage'),
    ('mixup', {'data.size': 18}, 'must be divisible by 4'),
    ('simclr', {'augment.crop_scale': (0.5, 1.5)}, 'must be 0 < low <= high <= 1'),
    ('mixup', {'finetune.mode': 'linear'}, "'linear' applies to task 'classify' only"),
    ('mixup', {'batch_size': 6}, 'must be divisible by 4'),
])
def test_validate_names_the_field(variant, overrides, message):
  c = configs.get_config('smoke')
  c.task = variant
  helpers.set_fields(c, overrides)
  with pytest.raises(cfg.ConfigError, match=message):
    train.validate(c, num_devices=4)


def test_default_variants_validate():
  for v in configs.VARIANTS:
    train.validate(configs.get_config(v), num_devices=1)


def test_train_step_compiles_once_and_batches_are_fresh(small):
  c = small('mixup')
  task = train.make_task(c)
  state, m = helpers.steps_tracing_once(task)
  assert int(state.step) == 3 and np.isfinite(float(m['loss']))
  a, b = task.train_batch(0), task.train_batch(1)
  assert a['candidates'].shape == (8, 3, 16, 16, 3) and not np.allclose(a['query'], b['query'])
  jax.tree.map(np.testing.assert_array_equal, a, task.train_batch(0))


def test_sharded_step_on_8_devices_matches_one_device():
  # BatchNorm in the heads: its statistics are over the global batch on any number of devices.
  # Adam divides each gradient element by its own RMS, so an element whose gradient is at the
  # float32 noise of the cross-device sums moves by a visible fraction of lr (seen: 5e-5 and
  # 6e-4, each in 1 element). So: all but 4 elements within 1e-5, those 4 within the 2.4e-3
  # that two opposite runs of the three warm-up steps' learning rates (1.2e-3) can reach.
  helpers.assert_sharded_step_matches_one_device('selfsup', atol=1e-5, outliers=4,
                                                 outlier_atol=2.4e-3)
