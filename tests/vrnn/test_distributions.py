"""Each log-density against scipy, the KL against Monte Carlo, the mixture sampler against its moments."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from vrnn import distributions as dist

RNG = np.random.default_rng(0)


def test_gaussian_log_prob_matches_scipy():
  x, mu = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3))
  sigma = RNG.uniform(0.1, 2.0, size=(5, 3))
  want = stats.norm.logpdf(x, mu, sigma).sum(-1)
  np.testing.assert_allclose(dist.gaussian_log_prob(x, mu, sigma), want, rtol=1e-5)


def test_gaussian_kl_matches_closed_form_and_monte_carlo():
  mu_q, mu_p = np.array([0.3, -1.0]), np.array([-0.2, 0.5])
  s_q, s_p = np.array([0.5, 1.5]), np.array([1.2, 0.7])
  kl = float(dist.gaussian_kl(mu_q, s_q, mu_p, s_p))
  hand = sum(np.log(s_p / s_q) + (s_q ** 2 + (mu_q - mu_p) ** 2) / (2 * s_p ** 2) - 0.5)
  assert kl == pytest.approx(hand, rel=1e-5)
  z = mu_q + s_q * RNG.normal(size=(400_000, 2))
  mc = np.mean(stats.norm.logpdf(z, mu_q, s_q).sum(-1) - stats.norm.logpdf(z, mu_p, s_p).sum(-1))
  assert kl == pytest.approx(mc, abs=0.01)
  assert float(dist.gaussian_kl(mu_q, s_q, mu_q, s_q)) == pytest.approx(0.0, abs=1e-6)


def test_bernoulli_log_prob_matches_scipy_and_is_safe_at_large_logits():
  logits = np.array([-3.0, 0.0, 2.5, 40.0])
  x = np.array([1.0, 0.0, 1.0, 0.0])
  want = stats.bernoulli.logpmf(x[:3], special.expit(logits[:3])).sum() - 40.0  # log(1-sigmoid(40))
  assert float(dist.bernoulli_log_prob(x, logits)) == pytest.approx(want, rel=1e-5)


def test_bivariate_log_prob_matches_scipy_multivariate_normal():
  for rho in (-0.9, 0.0, 0.6, 0.998):
    mu, sigma = np.array([0.4, -0.3]), np.array([0.7, 1.3])
    cov = np.array([[sigma[0] ** 2, rho * sigma[0] * sigma[1]],
                    [rho * sigma[0] * sigma[1], sigma[1] ** 2]])
    x = RNG.normal(size=(6, 2))
    want = stats.multivariate_normal(mu, cov).logpdf(x)
    got = dist.bivariate_log_prob(x, mu, sigma, np.full(6, rho))
    np.testing.assert_allclose(got, want, rtol=1e-4)


def gmm_params(k=3):
  return dict(logits=RNG.normal(size=k), mu=RNG.normal(size=(k, 2)),
              sigma=RNG.uniform(0.2, 1.0, size=(k, 2)), rho=RNG.uniform(-0.8, 0.8, size=k))


def test_gmm_log_prob_matches_weighted_scipy_sum():
  p = gmm_params()
  w = special.softmax(p['logits'])
  x = RNG.normal(size=(4, 2))
  want = np.log(sum(
      w[j] * stats.multivariate_normal(p['mu'][j], [
          [p['sigma'][j, 0] ** 2, p['rho'][j] * p['sigma'][j].prod()],
          [p['rho'][j] * p['sigma'][j].prod(), p['sigma'][j, 1] ** 2]]).pdf(x) for j in range(3)))
  got = dist.gmm_log_prob(x, *(np.broadcast_to(p[k], (4,) + p[k].shape)
                               for k in ('logits', 'mu', 'sigma', 'rho')))
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_gmm_log_prob_is_finite_far_in_the_tail():
  p = gmm_params()
  lp = dist.gmm_log_prob(np.array([300.0, -250.0]), p['logits'], p['mu'], p['sigma'], p['rho'])
  assert np.isfinite(float(lp)) and float(lp) < -1e4


def test_gmm_sample_has_the_mixture_moments():
  p = gmm_params()
  n = 200_000
  keys = jax.random.split(jax.random.PRNGKey(0), n)
  tile = lambda a: jnp.broadcast_to(a, (n,) + a.shape)
  xs = np.asarray(jax.vmap(lambda k, *a: dist.gmm_sample(k, *a))(
      keys, *(tile(jnp.asarray(p[k], jnp.float32)) for k in ('logits', 'mu', 'sigma', 'rho'))))
  w = special.softmax(p['logits'])
  mean = (w[:, None] * p['mu']).sum(0)
  covs = [np.array([[s[0] ** 2, r * s[0] * s[1]], [r * s[0] * s[1], s[1] ** 2]])
          for s, r in zip(p['sigma'], p['rho'])]
  second = sum(w[j] * (covs[j] + np.outer(p['mu'][j], p['mu'][j])) for j in range(3))
  np.testing.assert_allclose(xs.mean(0), mean, atol=0.01)
  np.testing.assert_allclose(np.cov(xs.T), second - np.outer(mean, mean), atol=0.02)


def test_sample_and_mean_layouts_with_pen_bit():
  k = 4
  p = {'logits': jnp.array([0.0, 9.0, 0.0, 0.0]), 'mu': jnp.arange(8.0).reshape(k, 2),
       'sigma': jnp.full((k, 2), 1e-3), 'rho': jnp.zeros(k), 'pen_logit': jnp.array([20.0])}
  x = dist.sample('gmm', jax.random.PRNGKey(3), p)
  assert x.shape == (3,) and float(x[2]) == 1.0
  np.testing.assert_allclose(x[:2], [2.0, 3.0], atol=0.01)   # component 1 dominates
  np.testing.assert_allclose(dist.mean('gmm', p), [2.0, 3.0, 1.0], atol=1e-6)
  lp = dist.log_prob('gmm', p, x)
  assert np.isfinite(float(lp))


def test_diagonal_gmm_in_three_dimensions_matches_scipy_and_its_moments():
  k, d = 3, 3
  p = dict(logits=RNG.normal(size=k), mu=RNG.normal(size=(k, d)),
           sigma=RNG.uniform(0.2, 1.0, size=(k, d)))
  w = special.softmax(p['logits'])
  x = RNG.normal(size=(4, d))
  want = np.log(sum(w[j] * stats.multivariate_normal(p['mu'][j], np.diag(p['sigma'][j] ** 2)).pdf(x)
                    for j in range(k)))
  got = dist.log_prob('gmm', {n: np.broadcast_to(v, (4,) + v.shape) for n, v in p.items()}, x)
  np.testing.assert_allclose(got, want, rtol=1e-4)
  n = 100_000
  tile = lambda a: jnp.broadcast_to(jnp.asarray(a, jnp.float32), (n,) + a.shape)
  xs = np.asarray(dist.sample('gmm', jax.random.PRNGKey(1), {m: tile(v) for m, v in p.items()}))
  mean = (w[:, None] * p['mu']).sum(0)
  second = sum(w[j] * (np.diag(p['sigma'][j] ** 2) + np.outer(p['mu'][j], p['mu'][j]))
               for j in range(k))
  np.testing.assert_allclose(xs.mean(0), mean, atol=0.015)
  np.testing.assert_allclose(np.cov(xs.T), second - np.outer(mean, mean), atol=0.03)
