"""SSIM, as skimage's structural_similarity computes it with gaussian_weights=True,
use_sample_covariance=False: Gaussian window 11, sigma 1.5, K = 0.01, 0.03, averaged over the
positions where the window fits. Used by the video and the image projects."""
import jax.numpy as jnp
import numpy as np


def gaussian_window(size=11, sigma=1.5):
  x = np.arange(size) - (size - 1) / 2
  w = np.exp(-x**2 / (2 * sigma**2))
  return w / w.sum()


def _valid_filter_matrix(n, window):
  """(n - k + 1, n) matrix M with (M @ v)[i] = sum_j window[j] v[i + j]."""
  k = len(window)
  m = np.zeros((n - k + 1, n), np.float32)
  for i in range(n - k + 1):
    m[i, i:i + k] = window
  return m


def ssim(a, b, data_range=1.0, size=11, sigma=1.5, k1=0.01, k2=0.03):
  """Mean SSIM per image over the last two axes: a, b (..., H, W) -> (...)."""
  h, w = a.shape[-2:]
  if min(h, w) < size:
    raise ValueError(f'images of {h}x{w} are smaller than the SSIM window {size}')
  win = gaussian_window(size, sigma)
  mh = jnp.asarray(_valid_filter_matrix(h, win))
  mw = jnp.asarray(_valid_filter_matrix(w, win))
  filt = lambda x: jnp.einsum('ih,...hw,jw->...ij', mh, x, mw)
  mu_a, mu_b = filt(a), filt(b)
  var_a = filt(a * a) - mu_a**2
  var_b = filt(b * b) - mu_b**2
  cov = filt(a * b) - mu_a * mu_b
  c1, c2 = (k1 * data_range)**2, (k2 * data_range)**2
  s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
  return s.mean(axis=(-2, -1))


def ssim_rgb(a, b, data_range=1.0):
  """Mean SSIM per image of (..., H, W, C) images: the mean over channels (skimage's
  channel_axis=-1)."""
  return ssim(jnp.moveaxis(a, -1, -3), jnp.moveaxis(b, -1, -3), data_range).mean(-1)
