"""Encoder and heads, kNN / linear probe on toy sets, the evaluation's pieces by hand, the
encoder-only restore for fine-tuning, and overfitting one batch."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import config as cfg
from selfsup import evaluate
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


def test_knn_on_a_separable_toy_set_and_its_votes_by_hand():
  rng = np.random.default_rng(0)
  centres = np.array([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
  labels = rng.integers(0, 3, 90)
  feats = centres[labels] + rng.normal(size=(90, 2))
  qlabels = rng.integers(0, 3, 30)
  queries = centres[qlabels] + rng.normal(size=(30, 2))
  scores = train.knn_predict(jnp.asarray(feats), jnp.asarray(labels), jnp.asarray(queries),
                             k=5, num_classes=3, temperature=0.1)
  assert (np.asarray(scores).argmax(-1) == qlabels).mean() == 1.0
  # Two neighbours of class 1 at cosine 1 and 0, one of class 0 at 0.6, k = 3, t = 1:
  # class 1 gets e + 1, class 0 gets e^0.6.
  tr = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
  got = train.knn_predict(tr, jnp.array([1, 1, 0, 2]), jnp.array([[2.0, 0.0]]), k=3,
                          num_classes=3, temperature=1.0)
  np.testing.assert_allclose(got, [[np.exp(0.6), np.e + 1, 0.0]], rtol=1e-6)


def test_linear_probe_separates_a_linearly_separable_set():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(200, 5))
  w = rng.normal(size=(5, 4))
  y = (x @ w).argmax(-1)
  logits = train.linear_probe(jnp.asarray(x), jnp.asarray(y), jnp.asarray(x[:50]), 4, 300,
                              0.05, 0.0)
  assert (np.asarray(logits).argmax(-1) == y[:50]).mean() >= 0.96


def test_confusion_matrix_and_top_mistakes_by_hand():
  m = evaluate.confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], 3)
  np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
  scores = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]]))
  idx, pred, p = evaluate.top_mistakes(scores, np.array([0, 0, 0, 1]), 5)
  np.testing.assert_array_equal(idx, [1, 3, 2])         # wrong with p = 0.8, 0.7, 0.6
  np.testing.assert_array_equal(pred, [0, 1, 1, 0])
  np.testing.assert_allclose(p[1], [0.2, 0.8])


def test_layer_grad_norms_group_leaves_by_module():
  grads = {'encoder': {'Conv_0': {'kernel': jnp.full((2, 2), 1.0), 'bias': jnp.full(2, 2.0)}},
           'head': {'Dense_0': {'kernel': jnp.array([3.0, 4.0])}}}
  got = evaluate.layer_grad_norms(grads)
  assert set(got) == {'encoder/Conv_0', 'head/Dense_0'}
  np.testing.assert_allclose(got['encoder/Conv_0'], np.sqrt(4 * 1 + 2 * 4))
  np.testing.assert_allclose(got['head/Dense_0'], 5.0)


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
