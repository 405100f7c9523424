"""The bound and the likelihood estimate, with padded steps masked out of every term.

Shapes: x (B, T, D), mask (B, T) with 1 on real steps. Per-step terms are (B, T) and zero
on padding, so a sequence's score does not depend on how far it was padded.
"""
import jax
import jax.numpy as jnp

from vrnn import distributions as dist
from vrnn import models


def step_terms(model, params, x, mask, key):
  """Per-step log p(x_t | .), analytic KL(q || p) and the sampled log p(z_t) - log q(z_t).

  Also per latent dimension (B, T, z_dim): 'kl_dims' (the KL's terms) and 'shift', the
  encoder's move away from the prior in the prior's units, (mu_q - mu_p) / sigma_p.
  """
  eps = jax.random.normal(key, x.shape[:2] + (model.z_dim,), x.dtype)
  outs = models.unroll(model, params, x, eps)
  log_px = dist.log_prob(model.output, outs['out'], x) * mask
  if not model.latent:
    zeros = jnp.zeros_like(log_px)
    return {'log_px': log_px, 'kl': zeros, 'log_ratio': zeros,
            'kl_dims': zeros[..., None], 'shift': zeros[..., None]}
  (mu_q, s_q), (mu_p, s_p) = outs['q'], outs['p']
  kl_dims = dist.gaussian_kl_dims(mu_q, s_q, mu_p, s_p) * mask[..., None]
  log_ratio = (dist.gaussian_log_prob(outs['z'], mu_p, s_p) -
               dist.gaussian_log_prob(outs['z'], mu_q, s_q)) * mask
  return {'log_px': log_px, 'kl': kl_dims.sum(-1), 'log_ratio': log_ratio, 'kl_dims': kl_dims,
          'shift': (mu_q - mu_p) / s_p * mask[..., None]}


def kl_penalty(kl_dims, mask, free_bits=0.0):
  """The KL term of the training loss, per sequence of the batch on average.

  Without free bits it is the mean over sequences of sum_t KL_t. With free bits lambda > 0
  (Kingma et al. 2016, one group per latent dimension d): each dimension's KL per real step,
  averaged over the batch, costs max(lambda, KL_d), so a dimension carries up to lambda nats
  per step for free and the encoder has no reason to shut it. The result is scaled back to
  nats per sequence (times the batch's real steps per sequence), so it equals the plain KL
  whenever every dimension is above lambda.
  """
  batch = kl_dims.shape[0]
  if not free_bits:
    return jnp.sum(kl_dims) / batch
  steps = jnp.maximum(mask.sum(), 1.0)
  per_dim = jnp.sum(kl_dims, axis=(0, 1)) / steps          # (z_dim,) nats per real step
  return jnp.sum(jnp.maximum(free_bits, per_dim)) * steps / batch


def loss_fn(params, model, x, mask, key, kl_weight=1.0, free_bits=0.0):
  """The training loss (the negative ELBO per sequence, with the KL weighted and free bits
  if asked) and the metrics to log, which always use the plain ELBO."""
  t = step_terms(model, params, x, mask, key)
  log_px, kl = t['log_px'].sum(1), t['kl'].sum(1)
  penalty = kl_penalty(t['kl_dims'], mask, free_bits if model.latent else 0.0)
  loss = kl_weight * penalty - jnp.mean(log_px)
  steps = jnp.maximum(mask.sum(), 1.0)
  return loss, {
      'loss': loss,
      'kl_penalty': penalty,
      'elbo': jnp.mean(log_px - kl),
      'elbo_per_step': jnp.sum(log_px - kl) / steps,
      'log_px': jnp.mean(log_px),
      'kl': jnp.mean(kl),
  }


def importance_log_likelihood(model, params, x, mask, key, num_samples):
  """log p(x) per sequence (B,), estimated as log mean_s w_s with the encoder as proposal.

  w_s = p(x, z^s) / q(z^s | x) for a whole trajectory z^s ~ q; by Jensen's inequality its
  expectation is >= the ELBO and it tends to log p(x) as num_samples grows. Samples run one
  after another (lax.map), so memory does not grow with num_samples. Exact for the RNN
  baseline, which has no latents.
  """
  def log_weight(k):
    t = step_terms(model, params, x, mask, k)
    return jnp.sum(t['log_px'] + t['log_ratio'], axis=1)

  log_w = jax.lax.map(log_weight, jax.random.split(key, num_samples))   # (S, B)
  return jax.nn.logsumexp(log_w, axis=0) - jnp.log(num_samples)
