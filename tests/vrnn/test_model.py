"""The VRNN's recurrence, masking, likelihood estimate and sampling."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from common import train_state
from vrnn import distributions as dist
from vrnn import losses
from vrnn import models

B, T, Z = 3, 12, 4


def small(**kw):
  args = dict(x_dim=3, z_dim=Z, h_dim=16, phi_x_dim=8, phi_z_dim=8, hidden_dim=16,
              num_mixtures=3, min_scale=0.05)
  return models.VRNN(**{**args, **kw})


def strokes(key, b=B, t=T):
  k1, k2 = jax.random.split(key)
  xy = jax.random.normal(k1, (b, t, 2))
  pen = jax.random.bernoulli(k2, 0.2, (b, t, 1)).astype(jnp.float32)
  return jnp.concatenate([xy, pen], -1)


def init(model, x):
  return model.init(jax.random.PRNGKey(0), x[:, 0])


def test_lstm_cell_matches_numpy():
  cell = models.LSTM(5)
  x, c, h = (np.random.default_rng(1).normal(size=(2, n)) for n in (3, 5, 5))
  params = cell.init(jax.random.PRNGKey(0), (c, h), x)
  (c1, h1), _ = cell.apply(params, (c, h), x)
  w, b = (np.asarray(params['params']['Dense_0'][k]) for k in ('kernel', 'bias'))
  assert np.all(b[5:10] == 1.0) and np.all(b[:5] == 0.0)   # forget bias 1
  i, f, g, o = np.split(np.concatenate([x, h], -1) @ w + b, 4, -1)
  c_want = special.expit(f) * c + special.expit(i) * np.tanh(g)
  np.testing.assert_allclose(c1, c_want, rtol=1e-5)
  np.testing.assert_allclose(h1, special.expit(o) * np.tanh(c_want), rtol=1e-5)


@pytest.mark.parametrize('kw', [{}, {'output': 'gauss'}, {'cell': 'gru'}, {'prior': 'standard'},
                                {'latent': False}])
def test_padding_changes_nothing(kw):
  """A sequence's terms and the gradients do not depend on what the padding holds."""
  model = small(**kw)
  x = strokes(jax.random.PRNGKey(1))
  lengths = jnp.array([T, 7, 3])
  mask = (jnp.arange(T)[None] < lengths[:, None]).astype(jnp.float32)
  garbage = jnp.where(mask[..., None] > 0, x, 1e3)
  zeros = x * mask[..., None]
  params = init(model, x)
  key = jax.random.PRNGKey(2)
  terms = jax.jit(lambda xx: losses.step_terms(model, params, xx, mask, key))
  a, b = terms(garbage), terms(zeros)
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-6)
    assert np.all(np.asarray(a[k])[np.asarray(mask) == 0] == 0.0)
  if kw in ({}, {'latent': False}):   # gradients: once with latents, once without
    grad = jax.jit(lambda xx: jax.grad(losses.loss_fn, has_aux=True)(params, model, xx, mask,
                                                                      key)[0])
    chex.assert_trees_all_close(grad(garbage), grad(zeros), rtol=1e-5, atol=1e-6)


def test_prefix_scores_match_a_shorter_run():
  """Masking a suffix gives the same per-step terms as running only the prefix."""
  model = small()
  x = strokes(jax.random.PRNGKey(3))
  params = init(model, x)
  eps = jax.random.normal(jax.random.PRNGKey(4), (B, T, Z))
  full = models.unroll(model, params, x, eps)
  short = models.unroll(model, params, x[:, :5], eps[:, :5])
  lp_full = dist.log_prob('gmm', full['out'], x)[:, :5]
  np.testing.assert_allclose(lp_full, dist.log_prob('gmm', short['out'], x[:, :5]), rtol=1e-5)


def test_standard_prior_is_unit_normal():
  model = small(prior='standard')
  x = strokes(jax.random.PRNGKey(5))
  out = models.unroll(model, init(model, x), x, jnp.zeros((B, T, Z)))
  np.testing.assert_array_equal(out['p'][0], 0.0)
  np.testing.assert_array_equal(out['p'][1], 1.0)
  assert 'prior_net' not in init(model, x)['params']


def test_sampled_bound_agrees_with_the_analytic_kl_bound():
  """E_q[log p(x|z) + log p(z) - log q(z)] (sampled) equals E_q[log p(x|z)] - KL (analytic)."""
  model = small()
  x = strokes(jax.random.PRNGKey(6), b=1)
  mask = jnp.ones((1, T))
  params = init(model, x)
  keys = jax.random.split(jax.random.PRNGKey(7), 4000)
  terms = jax.jit(jax.vmap(lambda k: losses.step_terms(model, params, x, mask, k)))(keys)
  sampled = np.asarray((terms['log_px'] + terms['log_ratio']).sum(-1)[:, 0])
  analytic = np.asarray((terms['log_px'] - terms['kl']).sum(-1)[:, 0])
  se = np.hypot(sampled.std(), analytic.std()) / np.sqrt(len(keys))
  assert abs(sampled.mean() - analytic.mean()) < 4 * se


def test_importance_estimate_is_above_the_bound_and_grows_with_samples():
  model = small()
  x = strokes(jax.random.PRNGKey(8))
  mask = jnp.ones((B, T)).at[2, 6:].set(0.0)
  params = init(model, x)
  keys = jax.random.split(jax.random.PRNGKey(9), 200)
  bound = lambda k: (lambda t: (t['log_px'] - t['kl']).sum(1))(
      losses.step_terms(model, params, x, mask, k))
  elbo = np.asarray(jax.jit(jax.vmap(bound))(keys[:50])).mean(0)
  ll = {s: np.asarray(jax.jit(lambda k, s=s: losses.importance_log_likelihood(
      model, params, x, mask, k, s))(keys[0])) for s in (1, 16, 256)}
  assert np.all(ll[256] > elbo)
  assert np.all(ll[256] > ll[16] - 0.5) and np.mean(ll[256]) > np.mean(ll[1])


def test_importance_estimate_is_exact_without_latents():
  model = small(latent=False)
  x = strokes(jax.random.PRNGKey(10))
  mask = jnp.ones((B, T))
  params = init(model, x)
  t = losses.step_terms(model, params, x, mask, jax.random.PRNGKey(0))
  ll = losses.importance_log_likelihood(model, params, x, mask, jax.random.PRNGKey(1), 4)
  np.testing.assert_allclose(ll, t['log_px'].sum(1), rtol=1e-5)


@pytest.mark.parametrize('kw', [{}, {'latent': False}, {'output': 'bernoulli', 'pen_bit': False}])
def test_generate_is_finite_deterministic_and_well_formed(kw):
  model = small(**kw)
  params = init(model, strokes(jax.random.PRNGKey(0)))
  a = models.generate(model, params, jax.random.PRNGKey(11), 4, 30)
  b = models.generate(model, params, jax.random.PRNGKey(11), 4, 30)
  assert a.shape == (4, 30, 3) and np.all(np.isfinite(a))
  np.testing.assert_array_equal(a, b)
  bits = a[..., 2] if kw.get('output') != 'bernoulli' else a
  assert set(np.unique(np.asarray(bits))) <= {0.0, 1.0}


def test_training_stays_finite_on_outliers_with_a_high_learning_rate():
  model = small()
  x = strokes(jax.random.PRNGKey(12)).at[0, 3, :2].set(500.0)
  mask = jnp.ones((B, T))
  tx = train_state.make_optimizer(3e-2, grad_clip=10.0)
  state = train_state.create(init(model, x), tx)

  @jax.jit
  def step(state, key):
    grads, m = jax.grad(losses.loss_fn, has_aux=True)(state.params, model, x, mask, key)
    state, norms = train_state.apply_gradients(state, grads, tx)
    return state, m['loss'], norms['grad_norm']

  for i in range(40):
    state, loss, gnorm = step(state, jax.random.PRNGKey(i))
    assert np.isfinite(float(loss)) and np.isfinite(float(gnorm)), i
  samples = models.generate(model, state.params, jax.random.PRNGKey(0), 4, 50)
  assert np.all(np.isfinite(samples))


def test_gmm_head_is_diagonal_beyond_two_features():
  head = models.OutputHead('gmm', x_dim=5, num_mixtures=3, pen_bit=False, min_scale=0.01)
  p, _ = jax.eval_shape(lambda: head.init_with_output(jax.random.PRNGKey(0), jnp.zeros((2, 8))))
  assert 'rho' not in p and p['mu'].shape == p['sigma'].shape == (2, 3, 5)
  strokes_head = models.OutputHead('gmm', x_dim=3, num_mixtures=3, pen_bit=True, min_scale=0.01)
  p, _ = jax.eval_shape(
      lambda: strokes_head.init_with_output(jax.random.PRNGKey(0), jnp.zeros((2, 8))))
  assert p['rho'].shape == (2, 3) and p['mu'].shape == (2, 3, 2) and p['pen_logit'].shape == (2, 1)
