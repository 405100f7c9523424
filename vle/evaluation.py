"""vle evaluation metrics: per-token MSE / SSIM of the VLE and the baseline on the test set, the
tokens needed to reach the MSE threshold, and the ARI of token ownership (Evaluator)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from common.ssim import ssim_rgb
from vle import losses
from vle import models


def tokens_to_reach(mse, threshold):
  """(N, B) per-token MSE -> (B,) the first token count with MSE < threshold; N + 1 if never."""
  below = np.asarray(mse) < threshold
  return np.where(below.any(0), below.argmax(0) + 1, mse.shape[0] + 1)


class Evaluator:
  """Per-token MSE / SSIM (pixels in [0, 1]) of the VLE and the baseline on a fixed test set,
  tokens to reach the MSE threshold, and the ARI of token ownership against the true objects."""

  def __init__(self, config, nets, load_test):
    """load_test() -> (test set, its description), called at the first use (train.make_evaluator
    binds train.test_set to the config)."""
    self.config, self.nets, self._load_test = config, nets, load_test
    e = config.eval

    def per_token(params, images):
      x = 2.0 * images - 1.0
      count = jnp.full((x.shape[0],), e.tokens, jnp.int32)
      out = {}
      for name, net in nets.items():
        outs = models.run_tokens(net, params[name], x, count, e.tokens)
        rec01 = jnp.clip((outs['recon'] + 1) / 2, 0, 1)
        out[name] = {'mse': losses.per_token_mse(rec01, images),
                     'ssim': ssim_rgb(rec01, images[None]),
                     'owner': losses.ownership(jax.tree.map(lambda a: a[:e.ari_tokens], outs),
                                               masked=name == 'vle' and net.kind != 'vanilla')}
      return out

    def tokens(params, images, name='vle'):
      x = 2.0 * images - 1.0
      count = jnp.full((x.shape[0],), e.tokens, jnp.int32)
      return models.run_tokens(nets[name], params[name], x, count, e.tokens)

    self._per_token = jax.jit(per_token)
    self.tokens = jax.jit(tokens, static_argnames='name')

  @functools.cached_property
  def test_data(self):
    return self._load_test()

  @property
  def images(self):
    return self.test_data[0]['image']

  @property
  def source(self):
    return self.test_data[1]

  @property
  def has_masks(self):
    return 'segmentation' in self.test_data[0]

  def per_token(self, params):
    """{model: {'mse': (N, B), 'ssim': (N, B), 'owner': (B, H, W)}} over the test set, numpy."""
    bs = self.config.eval.batch_size
    parts = [jax.device_get(self._per_token(params, self.images[i:i + bs]))
             for i in range(0, len(self.images), bs)]
    return jax.tree.map(lambda *a: np.concatenate(a, axis=1 if a[0].ndim == 2 else 0), *parts)

  def ari(self, owner):
    """(ARI, foreground ARI) per test image of a token ownership map against the true objects."""
    seg = np.asarray(self.test_data[0]['segmentation'])
    n = len(seg)
    t, p = seg.reshape(n, -1), np.asarray(owner).reshape(n, -1)
    k_true, k_pred = self.config.data.max_objects + 1, self.config.eval.ari_tokens
    return (np.asarray(losses.adjusted_rand_index(t, p, k_true, k_pred)),
            np.asarray(losses.adjusted_rand_index(t, p, k_true, k_pred, ignore_background=True)))

  def random_owner(self):
    """The random-mask baseline: every pixel owned by a uniformly random token."""
    shape = np.asarray(self.test_data[0]['segmentation']).shape
    return np.random.default_rng(self.config.seed).integers(0, self.config.eval.ari_tokens, shape)

  def metrics(self, params, per_token=None):
    """Scalar test metrics. median_tokens_to_threshold is the median of tokens_to_reach, so
    eval.tokens + 1 there means never reached (by half the images or more)."""
    per_token = per_token or self.per_token(params)
    e = self.config.eval
    out = {}
    for name, m in per_token.items():
      prefix = '' if name == 'vle' else 'baseline_'
      for n in sorted({1, min(4, e.tokens), e.tokens}):
        out[f'{prefix}mse_{n}'] = float(m['mse'][n - 1].mean())
        out[f'{prefix}ssim_{n}'] = float(m['ssim'][n - 1].mean())
      reach = tokens_to_reach(m['mse'], e.mse_threshold)
      out[f'{prefix}reached_threshold'] = float((reach <= e.tokens).mean())
      out[f'{prefix}median_tokens_to_threshold'] = float(np.median(reach))
      if self.has_masks:
        ari, fg = self.ari(m['owner'])
        out[f'{prefix}ari'], out[f'{prefix}fg_ari'] = float(ari.mean()), float(fg.mean())
    if self.has_masks:
      ari, fg = self.ari(self.random_owner())
      out['random_ari'], out['random_fg_ari'] = float(ari.mean()), float(fg.mean())
    return out
