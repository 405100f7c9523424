"""The VRNN's distributions as pure functions of their parameters (dicts of arrays).

Every log-density sums over the event axis (the last one) and is safe in float32: scales come
from softplus with a floor, correlations are kept inside (-1, 1), mixtures use log-sum-exp.
Output distributions are selected by kind:
  'gauss'      diagonal Gaussian                                params mu, sigma
  'gmm'        Gaussian mixture: bivariate with correlation    params logits, mu, sigma, rho
               for 2 features (pen offsets), diagonal otherwise (no rho)
  'bernoulli'  independent bits                                params logits
'gauss' and 'gmm' may carry a Bernoulli pen bit for the last feature (param 'pen_logit').
"""
import math

import jax
import jax.numpy as jnp

LOG_2PI = math.log(2 * math.pi)
MAX_RHO = 1.0 - 1e-3   # |rho| -> 1 makes the bivariate density singular


def positive(raw, floor):
  """A scale from an unconstrained value: softplus, never below `floor`."""
  return jax.nn.softplus(raw) + floor


def gaussian_log_prob(x, mu, sigma):
  z = (x - mu) / sigma
  return jnp.sum(-0.5 * z ** 2 - jnp.log(sigma) - 0.5 * LOG_2PI, axis=-1)


def gaussian_kl_dims(mu_q, sigma_q, mu_p, sigma_p):
  """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) of each dimension (elementwise)."""
  ratio = (sigma_q / sigma_p) ** 2
  return 0.5 * (ratio + ((mu_q - mu_p) / sigma_p) ** 2 - 1.0 - jnp.log(ratio))


def gaussian_kl(mu_q, sigma_q, mu_p, sigma_p):
  """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)), diagonal, summed over the last axis."""
  return jnp.sum(gaussian_kl_dims(mu_q, sigma_q, mu_p, sigma_p), axis=-1)


def bernoulli_log_prob(x, logits):
  return jnp.sum(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits), axis=-1)


def bivariate_log_prob(x, mu, sigma, rho):
  """log N(x; mu, [[s1^2, rho s1 s2], [rho s1 s2, s2^2]]) for x, mu, sigma (..., 2), rho (...)."""
  z = (x - mu) / sigma
  one_minus = 1.0 - rho ** 2
  quad = (z[..., 0] ** 2 + z[..., 1] ** 2 - 2 * rho * z[..., 0] * z[..., 1]) / one_minus
  return -LOG_2PI - jnp.sum(jnp.log(sigma), -1) - 0.5 * jnp.log(one_minus) - 0.5 * quad


def gmm_log_prob(x, logits, mu, sigma, rho=None):
  """Gaussian mixture: x (..., d), logits (..., K), mu/sigma (..., K, d); with rho (..., K) the
  components are bivariate with correlation (d = 2), without it diagonal."""
  if rho is None:
    per_component = gaussian_log_prob(x[..., None, :], mu, sigma)
  else:
    per_component = bivariate_log_prob(x[..., None, :], mu, sigma, rho)
  return jax.nn.logsumexp(jax.nn.log_softmax(logits, -1) + per_component, axis=-1)


def bivariate_sample(key, mu, sigma, rho):
  e1, e2 = jax.random.normal(key, (2,) + rho.shape)
  x1 = e1
  x2 = rho * e1 + jnp.sqrt(1.0 - rho ** 2) * e2
  return mu + sigma * jnp.stack([x1, x2], -1)


def gmm_sample(key, logits, mu, sigma, rho=None):
  """Picks a component per example from the mixture weights, then samples it."""
  k_pick, k_draw = jax.random.split(key)
  c = jax.random.categorical(k_pick, logits, axis=-1)
  pick = lambda a: jnp.take_along_axis(a, c[..., None, None], axis=-2)[..., 0, :]
  mu_c, sigma_c = pick(mu), pick(sigma)
  if rho is None:
    return mu_c + sigma_c * jax.random.normal(k_draw, mu_c.shape)
  rho_c = jnp.take_along_axis(rho, c[..., None], axis=-1)[..., 0]
  return bivariate_sample(k_draw, mu_c, sigma_c, rho_c)


def log_prob(kind, p, x):
  """log p(x) of an output distribution; x (..., D) with the pen bit last when p has one."""
  if kind == 'bernoulli':
    return bernoulli_log_prob(x, p['logits'])
  real = x[..., :-1] if 'pen_logit' in p else x
  if kind == 'gauss':
    lp = gaussian_log_prob(real, p['mu'], p['sigma'])
  else:
    lp = gmm_log_prob(real, p['logits'], p['mu'], p['sigma'], p.get('rho'))
  if 'pen_logit' in p:
    lp += bernoulli_log_prob(x[..., -1:], p['pen_logit'])
  return lp


def sample(kind, key, p):
  """One draw from an output distribution, in the layout `log_prob` takes."""
  k_real, k_pen = jax.random.split(key)
  if kind == 'bernoulli':
    return jax.random.bernoulli(key, jax.nn.sigmoid(p['logits'])).astype(jnp.float32)
  if kind == 'gauss':
    real = p['mu'] + p['sigma'] * jax.random.normal(k_real, p['mu'].shape)
  else:
    real = gmm_sample(k_real, p['logits'], p['mu'], p['sigma'], p.get('rho'))
  if 'pen_logit' not in p:
    return real
  pen = jax.random.bernoulli(k_pen, jax.nn.sigmoid(p['pen_logit'])).astype(jnp.float32)
  return jnp.concatenate([real, pen], -1)


def mean(kind, p):
  """The distribution's mean (for a mixture: the mean of its most likely component)."""
  if kind == 'bernoulli':
    return jax.nn.sigmoid(p['logits'])
  if kind == 'gauss':
    real = p['mu']
  else:
    best = jnp.argmax(p['logits'], -1)[..., None, None]
    real = jnp.take_along_axis(p['mu'], best, axis=-2)[..., 0, :]
  if 'pen_logit' not in p:
    return real
  return jnp.concatenate([real, jax.nn.sigmoid(p['pen_logit'])], -1)
