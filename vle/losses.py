"""VLE losses and metrics: reconstruction over the active tokens, the mask losses that stop
mask collapse, token-to-pixel ownership and the adjusted Rand index, and the objective (loss_fn:
the VLE's loss and the baseline VAE's).

Shapes: step outputs are stacked over tokens first, (N, B, ...); `count` (B,) is each image's
number of tokens; token n of an image is active when n < count.
"""
import jax
import jax.numpy as jnp
import numpy as np

from vle import models


def active_tokens(count, num_tokens):
  """(N, B) float: 1 where token n of image b is active (n < count[b])."""
  return (jnp.arange(num_tokens)[:, None] < count[None, :]).astype(jnp.float32)


def masked_mean(values, weights):
  return (values * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def per_token_mse(recon, x):
  """recon (N, B, H, W, C), x (B, H, W, C) -> (N, B) mean squared error after each token."""
  return jnp.square(recon - x[None]).mean(axis=(2, 3, 4))


def reconstruction_loss(recon, x, count, final_weight):
  """(1 - e) * mean MSE after each active token (the auxiliary loss) + e * MSE after each
  image's last token (the final loss), with e = final_weight. Returns (loss, terms)."""
  mse = per_token_mse(recon, x)
  active = active_tokens(count, mse.shape[0])
  aux = masked_mean(mse, active)
  final = jnp.take_along_axis(mse, (count - 1)[None, :], axis=0).mean()
  return (1.0 - final_weight) * aux + final_weight * final, {'aux_mse': aux, 'final_mse': final}


def mask_losses(masks, count, sharpness=5.0):
  """The terms that keep masks binary but neither empty nor repeated, each averaged over the
  active tokens (masks (N, B, H, W, 1) in [0, 1]):

    binary       mean m (1 - m)                              0 for a binary mask
    empty        exp(-sharpness * mean m^2)                  1 for an empty mask
    previous     exp(-sharpness * mean (m_n - m_{n-1})^2)    1 when a mask repeats the last one
    accumulated  exp(-sharpness * mean (m_n - min(1, sum_{k<n} m_k))^2)
                                                             1 when it repeats what is covered

  previous and accumulated start at the second token.
  """
  n = masks.shape[0]
  m = masks[..., 0]
  active = active_tokens(count, n)
  later = active * (jnp.arange(n) >= 1)[:, None]
  pixel_mean = lambda a: a.mean(axis=(2, 3))
  prev = jnp.concatenate([jnp.zeros_like(m[:1]), m[:-1]])
  acc = jnp.minimum(1.0, jnp.cumsum(m, axis=0) - m)
  return {
      'binary': masked_mean(pixel_mean(m * (1 - m)), active),
      'empty': masked_mean(jnp.exp(-sharpness * pixel_mean(jnp.square(m))), active),
      'previous': masked_mean(jnp.exp(-sharpness * pixel_mean(jnp.square(m - prev))), later),
      'accumulated': masked_mean(jnp.exp(-sharpness * pixel_mean(jnp.square(m - acc))), later),
  }


def ownership(outs, masked):
  """Which token explains each pixel: (N, B, H, W) -> (B, H, W) int token index.

  With masks, later tokens paint over earlier ones: token n owns a pixel with weight
  m_n * prod_{k>n} (1 - m_k). Without (vanilla, or the baseline), the token whose contribution
  is largest there owns it.
  """
  if masked:
    m = outs['mask'][..., 0]
    keep = jnp.cumprod((1 - m)[::-1], axis=0)[::-1]       # prod_{k>=n} (1 - m_k)
    after = jnp.concatenate([keep[1:], jnp.ones_like(keep[:1])])
    weight = m * after
  else:
    weight = jnp.abs(outs['contribution']).sum(-1)
  return jnp.argmax(weight, axis=0)


def adjusted_rand_index(true_labels, pred_labels, num_true, num_pred, ignore_background=False):
  """ARI between two labellings of the same pixels: (..., P) int -> (...).

  ignore_background drops the pixels whose true label is 0 (the foreground ARI of object
  discovery papers). 1 for identical partitions (up to renaming), ~0 for independent ones;
  1 when both put every pixel in one segment, as sklearn does.
  """
  t = jax.nn.one_hot(true_labels, num_true)
  p = jax.nn.one_hot(pred_labels, num_pred)
  if ignore_background:
    t = t * (true_labels != 0)[..., None]
  n_ij = jnp.einsum('...pi,...pj->...ij', t, p)
  a, b = n_ij.sum(-1), n_ij.sum(-2)
  pairs = lambda v: v * (v - 1) / 2
  index = pairs(n_ij).sum((-2, -1))
  sum_a, sum_b = pairs(a).sum(-1), pairs(b).sum(-1)
  expected = sum_a * sum_b / jnp.maximum(pairs(a.sum(-1)), 1.0)
  maximum = (sum_a + sum_b) / 2
  denom = maximum - expected
  return jnp.where(denom == 0, 1.0, (index - expected) / jnp.where(denom == 0, 1.0, denom))


def vle_loss(params, vle, config, x, count):
  """The VLE's training loss on images x (B, H, W, 3) in [-1, 1] with `count` tokens each."""
  outs = models.run_tokens(vle, params, x, count, config.tokens.train_max)
  loss, terms = reconstruction_loss(outs['recon'], x, count, config.loss.final_weight)
  if vle.kind != 'vanilla':
    l = config.loss
    mask = mask_losses(outs['mask'], count, l.mask_sharpness)
    weights = {'binary': l.mask_binary, 'empty': l.mask_empty, 'previous': l.mask_previous,
               'accumulated': l.mask_accumulated}
    loss = loss + sum(weights[k] * v for k, v in mask.items())
    terms.update({f'mask_{k}': v for k, v in mask.items()})
  return loss, {'loss': loss, **terms, 'tokens': count.mean()}


def vae_loss(params, vae, config, x, key):
  recon, mu, logvar = vae.apply(params, x, key)
  mse = jnp.square(recon - x).mean()
  kl = models.kl_divergence(mu, logvar).mean() / np.prod(x.shape[1:])
  loss = mse + config.baseline.kl_weight * kl
  return loss, {'baseline_loss': loss, 'baseline_mse': mse, 'baseline_kl': kl}


def loss_fn(params, nets, config, batch, key):
  x = 2.0 * batch['image'] - 1.0
  loss, metrics = vle_loss(params['vle'], nets['vle'], config, x, batch['count'])
  if 'baseline' in nets:
    b_loss, b_metrics = vae_loss(params['baseline'], nets['baseline'], config, x, key)
    loss = loss + b_loss   # separate parameters: each gets exactly its own gradient
    metrics.update(b_metrics)
  return loss, metrics
