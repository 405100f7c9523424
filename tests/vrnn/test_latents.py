"""Free bits, the per-dimension KL and the active-unit count, against hand-computed values."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import vrnn as vrnn_configs
from vrnn import distributions as dist
from vrnn import losses
from vrnn import train

# Two sequences, two steps, two latent dimensions; the second sequence's second step is padding.
KL_DIMS = np.array([[[0.1, 1.0], [0.3, 2.0]],
                    [[0.2, 0.0], [0.0, 0.0]]], np.float32)
MASK = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)


def test_gaussian_kl_dims_by_hand_and_summed():
  # KL(N(1, 0.5^2) || N(0, 1)) = (0.25 + 1 - 1 - log 0.25) / 2.
  got = dist.gaussian_kl_dims(jnp.array([1.0, 0.0]), jnp.array([0.5, 2.0]),
                              jnp.array([0.0, 0.0]), jnp.array([1.0, 2.0]))
  np.testing.assert_allclose(got, [0.5 * (0.25 - np.log(0.25)), 0.0], rtol=1e-6)
  rng = np.random.default_rng(0)
  mu_q, mu_p = rng.normal(size=(2, 5, 3))
  s_q, s_p = rng.uniform(0.2, 2.0, size=(2, 5, 3))
  np.testing.assert_allclose(dist.gaussian_kl(mu_q, s_q, mu_p, s_p),
                             dist.gaussian_kl_dims(mu_q, s_q, mu_p, s_p).sum(-1), rtol=1e-6)


def test_kl_penalty_without_free_bits_is_the_mean_kl_per_sequence():
  assert float(losses.kl_penalty(KL_DIMS, MASK)) == pytest.approx(3.6 / 2)


def test_kl_penalty_with_free_bits_by_hand():
  # Per dimension per real step (3 real steps): [0.6 / 3, 3.0 / 3] = [0.2, 1.0]. With
  # lambda = 0.5 the first costs 0.5: (0.5 + 1.0) * 3 steps / 2 sequences.
  assert float(losses.kl_penalty(KL_DIMS, MASK, 0.5)) == pytest.approx(2.25)
  # Below every dimension's KL, free bits change nothing.
  assert float(losses.kl_penalty(KL_DIMS, MASK, 0.1)) == pytest.approx(3.6 / 2)


def test_free_bits_stop_the_gradient_of_a_dimension_below_lambda():
  grad = np.asarray(jax.grad(lambda k: losses.kl_penalty(k, MASK, 0.5))(jnp.asarray(KL_DIMS)))
  np.testing.assert_array_equal(grad[..., 0], 0.0)      # 0.2 < 0.5 nats per step: free
  np.testing.assert_allclose(grad[..., 1], 0.5)         # d/dKL of sum_t KL_t / B


def test_latent_activity_matches_numpy_over_real_steps():
  rng = np.random.default_rng(1)
  shift = rng.normal(size=(4, 6, 3))
  shift[..., 1] *= 0.01         # a dimension that barely moves from the prior
  shift[..., 2] = 0.3           # one that moves, but by the same for every x: carries nothing
  mask = np.ones((4, 6))
  mask[1, 3:] = 0
  shift[1, 3:] = 50.0           # padding must not count
  real = np.array([shift[b, t] for b in range(4) for t in range(6) if mask[b, t]])
  got = train.latent_activity(shift, mask)
  np.testing.assert_allclose(got, real.var(0), rtol=1e-10)
  assert np.sum(got > train.ACTIVE_THRESHOLD) == 1


def test_step_terms_shift_is_the_encoder_move_in_prior_units():
  model = train.make_model(vrnn_configs.get_config('smoke'))
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3))
  params = model.init(jax.random.PRNGKey(1), x[:, 0])
  mask = jnp.ones((2, 5)).at[1, 3:].set(0.0)
  t = losses.step_terms(model, params, x, mask, jax.random.PRNGKey(2))
  assert t['kl_dims'].shape == t['shift'].shape == (2, 5, 4)
  np.testing.assert_allclose(t['kl_dims'].sum(-1), t['kl'], rtol=1e-5)
  np.testing.assert_array_equal(t['shift'][1, 3:], 0.0)
  # With the encoder equal to the prior in mean, the KL of a dimension is its variance term
  # only; so KL >= shift^2 / 2 everywhere, with equality where sigma_q = sigma_p.
  assert np.all(np.asarray(t['kl_dims']) >= 0.5 * np.asarray(t['shift']) ** 2 - 1e-5)


def test_generated_data_do_not_depend_on_the_training_seed():
  a, b = vrnn_configs.get_config('smoke'), vrnn_configs.get_config('smoke')
  b.seed = 7
  np.testing.assert_array_equal(train.load_data(a, 'eval')['x'], train.load_data(b, 'eval')['x'])
  b.data.seed = 7
  assert not np.array_equal(train.load_data(a, 'eval')['x'], train.load_data(b, 'eval')['x'])


def test_free_bits_must_not_be_negative():
  c = vrnn_configs.get_config('smoke')
  c.loss.free_bits = -0.1
  with pytest.raises(train.cfg.ConfigError, match='loss.free_bits'):
    train.validate(c)
