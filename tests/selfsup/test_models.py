"""Encoder and heads, the encoder-only restore for fine-tuning, and overfitting one batch."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import config as cfg
from selfsup import models
from selfsup import train
from tests import helpers


def test_encoder_pools_to_its_last_width():
  enc = models.Encoder(widths=(4, 8, 16), blocks=(1, 2, 1), stem_stride=2)
  x = jnp.zeros((3, 16, 16, 3))
  v = enc.init(jax.random.PRNGKey(0), x, train=False)
  assert enc.apply(v, x, train=False).shape == (3, 16)
  assert 'batch_stats' not in v          # group norm: nothing depends on the batch
  bn = models.Encoder(widths=(4, 8), blocks=(1, 1), norm='batch')
  assert 'batch_stats' in bn.init(jax.random.PRNGKey(0), x, train=False)


def test_a_residual_block_starts_as_the_identity():
  # The block's last norm has scale 0: with the same width and stride 1 the output is relu(x).
  block = models.ResidualBlock(6)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 6))
  v = block.init(jax.random.PRNGKey(0), x, train=False)
  np.testing.assert_allclose(block.apply(v, x, train=False), jax.nn.relu(x), atol=1e-6)


def _head(kind, q, c, **kw):
  head = models.SiameseHead(kind=kind, hidden=(8,), **kw)
  v = head.init(jax.random.PRNGKey(0), q, c, train=False)
  return head.apply(v, q, c, train=False)


def test_siamese_heads_by_hand():
  q = jnp.array([[1.0, 0.0, 0.0, 0.0]])
  c = jnp.array([[[2.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]])
  np.testing.assert_allclose(_head('dot', q, c), [[2.0, 0.0, 1.0]])
  # Cosine over the 'auto' temperature sqrt(4) = 2, and over an explicit 0.1.
  np.testing.assert_allclose(_head('cosine', q, c), [[0.5, 0.0, 0.5 / 2 ** 0.5]], rtol=1e-6)
  np.testing.assert_allclose(_head('cosine', q, c, temperature=0.1),
                             [[10.0, 0.0, 10 / 2 ** 0.5]], rtol=1e-5)
  assert _head('mlp', q, c).shape == (1, 3)


def test_mlp_head_scores_each_candidate_on_its_own():
  q = jax.random.normal(jax.random.PRNGKey(0), (2, 5))
  c = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 5))
  perm = jnp.array([2, 0, 3, 1])
  np.testing.assert_allclose(_head('mlp', q, c)[:, perm], _head('mlp', q, c[:, perm]),
                             rtol=1e-5, atol=1e-6)


@pytest.fixture(scope='module')
def pretext_run(tmp_path_factory, small):
  """A mixup run with BatchNorm in the encoder, so its running statistics must come along too."""
  workdir = tmp_path_factory.mktemp('selfsup_pretext')
  c = small('mixup', **{'model.norm': 'batch'})
  helpers.train_in_process(train, c, workdir)
  return workdir, c


def _state(config, workdir=None):
  data = train.datasets(config)
  task = train.make_task(config, data)
  return task, task.init(jax.random.PRNGKey(config.seed))


def test_finetune_restores_only_the_encoder(pretext_run, tmp_path, small):
  src, _ = pretext_run
  enc, step = train.load_encoder(str(src))
  assert step == 4
  c = small('finetune', **{'model.norm': 'batch', 'finetune.init_from': str(src)})
  train.validate(c)
  _, state = _state(c)
  jax.tree.map(np.testing.assert_array_equal, state.params['encoder'], enc['params'])
  jax.tree.map(np.testing.assert_array_equal, state.batch_stats['encoder'], enc['batch_stats'])
  _, fresh = _state(small('finetune', **{'model.norm': 'batch'}))
  assert set(state.params) == {'encoder', 'head'}
  jax.tree.map(np.testing.assert_array_equal, state.params['head'], fresh.params['head'])
  assert not np.allclose(jax.tree.leaves(state.params['encoder'])[0],
                         jax.tree.leaves(fresh.params['encoder'])[0])


def test_linear_finetune_leaves_the_encoder_alone(pretext_run, tmp_path, small):
  src, _ = pretext_run
  c = small('finetune', **{'model.norm': 'batch', 'finetune.init_from': str(src),
                           'finetune.mode': 'linear'})
  helpers.train_in_process(train, c, tmp_path)
  enc, _ = train.load_encoder(str(src))
  after, _ = train.load_encoder(str(tmp_path))
  jax.tree.map(np.testing.assert_array_equal, after, enc)    # params and running statistics
  task, init = _state(c)
  from common import loop
  state, _ = loop.restore(str(tmp_path), task.init, c.seed)
  assert not np.allclose(state.params['head']['Dense_0']['kernel'],
                         init.params['head']['Dense_0']['kernel'])


def test_finetune_from_a_different_encoder_fails_naming_the_field(pretext_run, small):
  src, _ = pretext_run
  c = small('finetune', **{'finetune.init_from': str(src)})    # group norm here, batch there
  with pytest.raises(cfg.ConfigError, match="config.model.norm='group' is invalid: the run in "
                     "finetune.init_from has model.norm='batch'"):
    train.validate(c)
  c.finetune.init_from = '/nonexistent/run'
  with pytest.raises(cfg.ConfigError, match='no training run there'):
    train.validate(c)


def test_overfit_one_batch_repeats_an_unaugmented_batch_and_fits_it(small):
  c = small('finetune', overfit_one_batch=True)
  c.optim.update(dict(lr=1e-2, warmup_steps=0, weight_decay=0.0))
  task, state = _state(c)
  a = task.train_batch(0)
  jax.tree.map(np.testing.assert_array_equal, a, task.train_batch(7))
  images = train.datasets(c)['train'][0]
  # Unaugmented: every image of the batch is one of the labelled images, exactly.
  flat = images.reshape(len(images), -1).astype(np.float32) / 255
  for img in np.asarray(a['image']):
    assert np.min(np.abs(flat - img.reshape(-1)).max(-1)) < 1e-6
  step = jax.jit(task.train_step)
  for _ in range(60):
    state, m = step(state, a, jax.random.PRNGKey(0))
  assert float(m["accuracy"]) == 1.0 and float(m["loss"]) < 0.05
