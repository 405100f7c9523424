"""Pure loss terms. Means over every element, so weights do not depend on image or batch size."""
import jax
import jax.numpy as jnp
import optax


def reconstruction(logits, target, kind='mse'):
  """MSE of sigmoid(logits) ('mse'), binary cross-entropy on the logits (stable form, 'bce'),
  or MSE of the raw outputs ('mse_linear', for standardised spectrograms)."""
  if kind == 'mse':
    return jnp.mean((jax.nn.sigmoid(logits) - target) ** 2)
  if kind == 'mse_linear':
    return jnp.mean((logits - target) ** 2)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, target))


def kl_to_standard_normal(mu, logvar):
  """KL(N(mu, exp(logvar)) || N(0, I)), summed over z, averaged over the rest."""
  return jnp.mean(jnp.sum(0.5 * (jnp.exp(logvar) + mu ** 2 - 1.0 - logvar), axis=-1))


def reparameterize(key, mu, logvar):
  return mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)


def teacher_prob(step, schedule, duration=30000.0):
  """Probability of feeding the prior the encoded frame rather than its own prediction.

  sigmoid: p = 2200 / (2200 + exp((step + 8000) / 2200)), the released recipe;
  linear: p = 1 - step / duration; none: always teacher-forced.
  """
  step = jnp.asarray(step, jnp.float32)
  if schedule == 'sigmoid':
    return 2200.0 / (2200.0 + jnp.exp((step + 8000.0) / 2200.0))
  if schedule == 'linear':
    return jnp.clip(1.0 - step / duration, 0.0, 1.0)
  return jnp.ones_like(step)
