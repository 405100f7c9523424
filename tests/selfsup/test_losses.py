"""Every loss and accuracy against a hand computation or an independent loop."""
import math

import jax.numpy as jnp
import numpy as np

from selfsup import losses


def test_bce_by_hand():
  # -log(sigmoid(0)) = log 2; -log(1 - sigmoid(2)) = log(1 + e^2).
  got = losses.bce(jnp.array([0.0, 2.0]), jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(got, (math.log(2) + math.log(1 + math.e ** 2)) / 2, rtol=1e-6)


def test_mse_by_hand():
  np.testing.assert_allclose(losses.mse(jnp.array([[0.5, 0.5, 0.0]]),
                                        jnp.array([[0.7, 0.3, 0.0]])), 0.08 / 3, rtol=1e-5)


def test_softmax_ce_by_hand():
  # logits (0, ln 3): p = (1/4, 3/4); label 1 -> -ln 3/4.
  got = losses.softmax_ce(jnp.array([[0.0, math.log(3)]]), jnp.array([1]))
  np.testing.assert_allclose(got, -math.log(0.75), rtol=1e-6)


def test_margin_contrastive_by_hand():
  # similar pair at d=0.5: 0.5 * 0.25; dissimilar at 0.3 < m: 0.5 * 0.7^2; dissimilar at 1.5: 0.
  d = jnp.array([0.5, 0.3, 1.5])
  got = losses.margin_contrastive(d, jnp.array([1, 0, 0]), margin=1.0)
  np.testing.assert_allclose(got, (0.125 + 0.245 + 0.0) / 3, rtol=1e-6)


def test_pairwise_distance_is_euclidean():
  np.testing.assert_allclose(losses.pairwise_distance(jnp.array([[0.0, 0.0]]),
                                                      jnp.array([[3.0, 4.0]])), [5.0], rtol=1e-6)


def _nt_xent_loop(z1, z2, t):
  """The SimCLR loss written out view by view, in float64."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n2 = len(z)
  total = 0.0
  for i in range(n2):
    j = (i + n2 // 2) % n2
    others = [np.exp(z[i] @ z[k] / t) for k in range(n2) if k != i]
    total += -np.log(np.exp(z[i] @ z[j] / t) / sum(others))
  return total / n2


def test_nt_xent_matches_a_loop_over_views():
  rng = np.random.default_rng(0)
  z1, z2 = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
  got = losses.nt_xent(jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32), 0.3)
  np.testing.assert_allclose(got, _nt_xent_loop(z1, z2, 0.3), rtol=1e-5)


def test_nt_xent_of_identical_orthogonal_views_by_hand():
  # z1 = z2 = e_1, e_2: each view's partner has cosine 1, the two others 0:
  # loss = -log(e^{1/t} / (e^{1/t} + 2)).
  z = jnp.eye(4)[:2]
  t = 0.5
  np.testing.assert_allclose(losses.nt_xent(z, z, t),
                             -math.log(math.e ** 2 / (math.e ** 2 + 2)), rtol=1e-6)
  np.testing.assert_allclose(losses.nt_xent_accuracy(z, z), 1.0)


def test_accuracies_by_hand():
  logits = jnp.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
  np.testing.assert_allclose(losses.accuracy(logits, jnp.array([0, 1, 1])), 2 / 3)
  # Which-sources accuracy: the k best scores must be exactly the k targets.
  scores = jnp.array([[3.0, 2.0, 1.0], [3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
  which = jnp.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
  np.testing.assert_allclose(losses.topk_set_accuracy(scores, which), 2 / 3)
  np.testing.assert_allclose(losses.multilabel_exact(jnp.array([[1.0, -1.0], [1.0, 1.0]]),
                                                     jnp.array([[1.0, 0.0], [1.0, 0.0]])), 0.5)
