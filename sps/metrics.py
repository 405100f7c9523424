"""Disentanglement metrics: how linearly z encodes the true positions, and whether it encodes them
at all (a nearest-neighbour read-out)."""
import numpy as np


def linear_projection(z, positions):
  """Least-squares fit (with bias) of standardised true coordinates from z.

  z: (N, d); positions: (N, P). Returns (mse per axis (P,), fitted standardised positions,
  standardised positions). The MSE of each standardised axis is 1 - R^2 of that axis.
  """
  z = np.asarray(z, np.float64)
  y = np.asarray(positions, np.float64)
  y = (y - y.mean(0)) / np.maximum(y.std(0), 1e-12)
  x = np.concatenate([z, np.ones((len(z), 1))], axis=1)
  coef, *_ = np.linalg.lstsq(x, y, rcond=None)
  fit = x @ coef
  return np.mean((y - fit) ** 2, axis=0), fit, y


def linear_projection_mse(z, positions):
  """Mean over axes of the residual MSE (~ 1 - mean R^2): < 0.2 'kinda good', < 0.03 clearly disentangled."""
  return float(np.mean(linear_projection(z, positions)[0]))


def knn_projection(z, positions, k=10):
  """Per-axis MSE of a k-nearest-neighbour read-out of the standardised true coordinates from z.

  z: (N, T, d), positions: (N, T, P). Neighbours (Euclidean, z standardised per dim) come from
  the frames of the first half of the sequences and are scored on the second half, so that a
  frame's own sequence never answers for it. Low kNN but high linear MSE means z carries the
  positions on a curved code: the information is there, not disentangled.
  """
  flat = lambda a: a.reshape(-1, a.shape[-1])
  standardise = lambda a: (a - flat(a).mean(0)) / np.maximum(flat(a).std(0), 1e-12)
  z = standardise(np.asarray(z, np.float64))
  y = standardise(np.asarray(positions, np.float64))
  half = len(z) // 2
  z_fit, y_fit, z_test, y_test = flat(z[:half]), flat(y[:half]), flat(z[half:]), flat(y[half:])
  dist = ((z_test[:, None] - z_fit[None]) ** 2).sum(-1)
  nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
  return np.mean((y_test - y_fit[nearest].mean(1)) ** 2, axis=0)


def r2(z, target):
  """R² of a least-squares fit (with bias) of a 1-D target from z (N, d)."""
  z = np.asarray(z, np.float64).reshape(len(target), -1)
  y = np.asarray(target, np.float64)
  x = np.concatenate([z, np.ones((len(z), 1))], axis=1)
  coef, *_ = np.linalg.lstsq(x, y, rcond=None)
  return float(1.0 - np.sum((y - x @ coef) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12))
