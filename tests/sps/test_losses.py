import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sps import losses
from sps import metrics


def test_kl_by_hand():
  mu = jnp.array([[1.0, 0.0]])
  logvar = jnp.array([[0.0, jnp.log(4.0)]])
  # 0.5 * (var + mu^2 - 1 - log var) per dim: 0.5 * (1 + 1 - 1 - 0) + 0.5 * (4 + 0 - 1 - log 4)
  expected = 0.5 + 0.5 * (3 - np.log(4.0))
  assert float(losses.kl_to_standard_normal(mu, logvar)) == pytest.approx(expected, rel=1e-6)


def test_reparameterize_uses_half_logvar():
  mu, logvar = jnp.zeros((200000,)), jnp.full((200000,), jnp.log(9.0))
  z = losses.reparameterize(jax.random.PRNGKey(0), mu, logvar)
  assert float(jnp.std(z)) == pytest.approx(3.0, rel=0.01)


def test_reconstruction_by_hand():
  logits = jnp.array([0.0, 2.0])
  target = jnp.array([1.0, 0.0])
  s = 1 / (1 + np.exp(-2.0))
  assert float(losses.reconstruction(logits, target, 'mse')) == pytest.approx(((0.5 - 1) ** 2 + s ** 2) / 2, rel=1e-6)
  bce = (-np.log(0.5) - np.log(1 - s)) / 2
  assert float(losses.reconstruction(logits, target, 'bce')) == pytest.approx(bce, rel=1e-5)


def test_teacher_schedules():
  p = [float(losses.teacher_prob(s, 'sigmoid')) for s in (0, 5000, 10000, 15000)]
  np.testing.assert_allclose(p, [0.98, 0.86, 0.38, 0.06], atol=0.01)
  assert float(losses.teacher_prob(7500, 'linear', 30000)) == pytest.approx(0.75)
  assert float(losses.teacher_prob(40000, 'linear', 30000)) == 0.0
  assert float(losses.teacher_prob(40000, 'none')) == 1.0


def test_linear_projection():
  rng = np.random.default_rng(0)
  pos = rng.normal(size=(500, 3))
  mixing = rng.normal(size=(3, 3))
  assert metrics.linear_projection_mse(pos @ mixing + 4.0, pos) < 1e-12
  assert metrics.linear_projection_mse(rng.normal(size=(500, 3)), pos) > 0.95
  # One coordinate missing: its axis is unexplained (mse 1), the others perfect -> mean 1/3.
  mse_axis, _, _ = metrics.linear_projection(pos[:, :2], pos)
  np.testing.assert_allclose(mse_axis, [0, 0, 1], atol=0.02)


def test_knn_projection_small_case_by_hand():
  # Two fit sequences, one test sequence, one frame each, 1-D z and position, k=1: the test
  # z (0.9 standardised the same way) is nearest to the fit z 1.0, so it reads out that position.
  z = np.array([[[0.0]], [[1.0]], [[0.9]], [[3.0]]])   # sequences 0,1 fit; 2,3 test
  pos = np.array([[[10.0]], [[20.0]], [[30.0]], [[40.0]]])
  ys = (pos - 25.0) / np.std([10.0, 20.0, 30.0, 40.0])
  # test z 0.9 -> nearest fit z 1.0 (y of 20); test z 3.0 -> nearest 1.0 too.
  expected = np.mean([(ys[2, 0, 0] - ys[1, 0, 0]) ** 2, (ys[3, 0, 0] - ys[1, 0, 0]) ** 2])
  np.testing.assert_allclose(metrics.knn_projection(z, pos, k=1), [expected], rtol=1e-12)


def test_knn_projection_sees_a_curved_code_that_the_linear_fit_misses():
  rng = np.random.default_rng(0)
  pos = rng.uniform(-1, 1, size=(200, 10, 2))
  # An invertible but curved code: the angle and radius of a spiral carry both coordinates.
  angle, radius = 3.0 * (pos[..., 0] + 1), 1.0 + pos[..., 1] + 1
  z = np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1)
  assert metrics.linear_projection_mse(z.reshape(-1, 2), pos.reshape(-1, 2)) > 0.3
  assert np.all(metrics.knn_projection(z, pos) < 0.05)
  noise = rng.normal(size=z.shape)                 # carries nothing: as bad as the mean
  assert np.all(metrics.knn_projection(noise, pos) > 0.9)


def test_linear_projection_small_case_by_hand():
  # y = [0, 1, 2, 3] standardised; z fits y except a wiggle: residuals computed with numpy by hand.
  z = np.array([[0.0], [1.0], [2.0], [4.0]])
  y = np.array([[0.0], [1.0], [2.0], [3.0]])
  ys = (y - y.mean()) / y.std()
  zc = z - z.mean()
  slope = float((zc * ys).sum() / (zc ** 2).sum())
  expected = float(np.mean((ys - slope * zc) ** 2))
  assert metrics.linear_projection_mse(z, y) == pytest.approx(expected, rel=1e-9)
