"""SSIM against an independent scipy reimplementation of skimage's."""
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from common import ssim as S


def _ssim_reference(a, b):
  """SSIM as skimage computes it (gaussian_weights, sigma 1.5, truncate 3.5), with scipy."""
  filt = lambda x: ndimage.gaussian_filter(x, 1.5, truncate=3.5, mode='reflect')
  c1, c2 = 0.01**2, 0.03**2
  mu_a, mu_b = filt(a), filt(b)
  va, vb = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2
  cov = filt(a * b) - mu_a * mu_b
  s = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
  return s[5:-5, 5:-5].mean()   # skimage crops (win_size - 1) // 2 from each side


def test_ssim_against_a_scipy_reference():
  rng = np.random.default_rng(0)
  a = rng.uniform(size=(24, 20))
  b = np.clip(a + 0.2 * rng.normal(size=a.shape), 0, 1)
  assert float(S.ssim(jnp.asarray(a), jnp.asarray(b))) == pytest.approx(
      _ssim_reference(a, b), abs=1e-5)
  assert float(S.ssim(jnp.asarray(a), jnp.asarray(a))) == pytest.approx(1.0, abs=1e-6)
  with pytest.raises(ValueError, match='smaller than the SSIM window'):
    S.ssim(jnp.zeros((8, 8)), jnp.zeros((8, 8)))


def test_ssim_rgb_is_the_mean_over_channels():
  rng = np.random.default_rng(1)
  a = rng.uniform(size=(2, 16, 18, 3))
  b = np.clip(a + 0.3 * rng.normal(size=a.shape), 0, 1)
  got = np.asarray(S.ssim_rgb(jnp.asarray(a), jnp.asarray(b)))
  want = [[_ssim_reference(a[i, ..., c], b[i, ..., c]) for c in range(3)] for i in range(2)]
  np.testing.assert_allclose(got, np.mean(want, axis=1), atol=1e-5)
