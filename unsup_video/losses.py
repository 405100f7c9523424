"""Training losses and test metrics, per frame (summed over the frame's pixels).

Training: 'bce' is the Bernoulli cross-entropy of the targets under sigmoid(logits) (the
paper's loss; needs sigmoid output and data in (0, 1)); 'mse' is the squared error of the
activated output, in the data range.

Metrics are always computed in (0, 1) pixel units, whatever the training range:
  * cross-entropy per frame, the paper's number (341.2 for its best model);
  * MSE per frame (summed over pixels), the number modern papers report;
  * SSIM (Gaussian window 11, sigma 1.5, K = 0.01, 0.03, data range 1), the mean over the
    positions where the window fits (as skimage's structural_similarity with
    gaussian_weights=True, use_sample_covariance=False).
"""
import jax.numpy as jnp
import optax

from common.ssim import ssim
from unsup_video import models

LOSSES = ('bce', 'mse')
RANGES = ('unit', 'signed')     # data in (0, 1) or in (-1, 1)
PROB_EPS = 1e-6                 # probabilities of outputs that are not sigmoids are clipped to this


def to_range(frames, data_range):
  """Frames in (0, 1) -> the training range."""
  return frames if data_range == 'unit' else 2.0 * frames - 1.0


def to_unit(frames, data_range):
  """Frames in the training range -> (0, 1)."""
  return frames if data_range == 'unit' else 0.5 * (frames + 1.0)


def _pixel_sum(a):
  return a.reshape(a.shape[:2] + (-1,)).sum(-1)


def frame_loss(kind, logits, target, activation):
  """Training loss per frame (B, T): logits and target (B, T, H, W), target in the data range."""
  if kind == 'bce':
    return _pixel_sum(optax.sigmoid_binary_cross_entropy(logits, target))
  return _pixel_sum(jnp.square(models.activate(activation, logits) - target))


def unit_prediction(logits, activation, data_range):
  """The predicted frame in (0, 1) units (not clipped)."""
  return to_unit(models.activate(activation, logits), data_range)


def cross_entropy(logits, target01, activation, data_range):
  """Bernoulli cross-entropy per frame (B, T) in nats, target in (0, 1).

  Exact from the logits for a sigmoid on (0, 1) data; otherwise the prediction mapped to
  (0, 1) is clipped to [PROB_EPS, 1 - PROB_EPS].
  """
  if activation == 'sigmoid' and data_range == 'unit':
    return _pixel_sum(optax.sigmoid_binary_cross_entropy(logits, target01))
  p = jnp.clip(unit_prediction(logits, activation, data_range), PROB_EPS, 1 - PROB_EPS)
  return _pixel_sum(-(target01 * jnp.log(p) + (1 - target01) * jnp.log1p(-p)))


def squared_error(pred01, target01):
  """Squared error per frame (B, T), summed over pixels, both in (0, 1)."""
  return _pixel_sum(jnp.square(pred01 - target01))


def frame_metrics(logits, target01, activation, data_range):
  """Per-frame (B, T) cross-entropy, squared error and SSIM of one branch's output."""
  pred = jnp.clip(unit_prediction(logits, activation, data_range), 0.0, 1.0)
  return {
      'cross_entropy': cross_entropy(logits, target01, activation, data_range),
      'mse': squared_error(pred, target01),
      'ssim': ssim(pred, target01),
  }
