"""kNN / linear probe on toy sets and the evaluation's pieces by hand."""
import jax.numpy as jnp
import numpy as np

from selfsup import evaluation


def test_knn_on_a_separable_toy_set_and_its_votes_by_hand():
  rng = np.random.default_rng(0)
  centres = np.array([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
  labels = rng.integers(0, 3, 90)
  feats = centres[labels] + rng.normal(size=(90, 2))
  qlabels = rng.integers(0, 3, 30)
  queries = centres[qlabels] + rng.normal(size=(30, 2))
  scores = evaluation.knn_predict(jnp.asarray(feats), jnp.asarray(labels), jnp.asarray(queries),
                                  k=5, num_classes=3, temperature=0.1)
  assert (np.asarray(scores).argmax(-1) == qlabels).mean() == 1.0
  # Two neighbours of class 1 at cosine 1 and 0, one of class 0 at 0.6, k = 3, t = 1:
  # class 1 gets e + 1, class 0 gets e^0.6.
  tr = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
  got = evaluation.knn_predict(tr, jnp.array([1, 1, 0, 2]), jnp.array([[2.0, 0.0]]), k=3,
                               num_classes=3, temperature=1.0)
  np.testing.assert_allclose(got, [[np.exp(0.6), np.e + 1, 0.0]], rtol=1e-6)


def test_linear_probe_separates_a_linearly_separable_set():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(200, 5))
  w = rng.normal(size=(5, 4))
  y = (x @ w).argmax(-1)
  logits = evaluation.linear_probe(jnp.asarray(x), jnp.asarray(y), jnp.asarray(x[:50]), 4,
                                   300, 0.05, 0.0)
  assert (np.asarray(logits).argmax(-1) == y[:50]).mean() >= 0.96


def test_confusion_matrix_and_top_mistakes_by_hand():
  m = evaluation.confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], 3)
  np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
  scores = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]]))
  idx, pred, p = evaluation.top_mistakes(scores, np.array([0, 0, 0, 1]), 5)
  np.testing.assert_array_equal(idx, [1, 3, 2])         # wrong with p = 0.8, 0.7, 0.6
  np.testing.assert_array_equal(pred, [0, 1, 1, 0])
  np.testing.assert_allclose(p[1], [0.2, 0.8])


def test_layer_grad_norms_group_leaves_by_module():
  grads = {'encoder': {'Conv_0': {'kernel': jnp.full((2, 2), 1.0), 'bias': jnp.full(2, 2.0)}},
           'head': {'Dense_0': {'kernel': jnp.array([3.0, 4.0])}}}
  got = evaluation.layer_grad_norms(grads)
  assert set(got) == {'encoder/Conv_0', 'head/Dense_0'}
  np.testing.assert_allclose(got['encoder/Conv_0'], np.sqrt(4 * 1 + 2 * 4))
  np.testing.assert_allclose(got['head/Dense_0'], 5.0)
