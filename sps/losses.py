"""The SPS objective: the pure loss terms, the prior's prediction paths (identity and symmetry),
the teacher-forcing masks and the warm-up, and loss_fn, their weighted sum.

Means over every element, so weights do not depend on image or batch size."""
import functools

import jax
import jax.numpy as jnp
import optax

from sps import symmetry
from sps.models import SPS


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


def teacher_mask(key, p_teacher, batch, steps, context):
  """(batch, steps) bool: feed the prior the encoded frame (True) or its own last guess; the
  first `context` inputs are always the encoded frames."""
  return jax.random.bernoulli(key, p_teacher, (batch, steps)) | (jnp.arange(steps) < context)[None]


def prediction_losses(predict, decode, z, x, g, key, p_teacher, context, kind='mse',
                      stop_grad_target=True, stop_grad_input=False, score_all=False,
                      teacher=None):
  """One prior path: predict z[1:] from g.z, map back with g^-1, score in z and in pixels.

  predict(z_in, teacher, key) -> predictions of z_in[1:]; decode(z) -> frame logits.
  z: (B, T, d) encoded sequences; x: (B, T, ...) frames; g: batched (A, b), or None for
  the identity path. The prior is unrolled once per path. The predictions of z[context:] are
  scored, or all T-1 of them with score_all (the release). stop_grad_target: no gradient
  from the z loss into the encoded target (the log: prevents collapse); stop_grad_input:
  none from the prior into the encoder through its input either. teacher: a given
  teacher_mask (else drawn from key with p_teacher). Returns (z loss, image loss, the scored
  predictions mapped back by g^-1: (B, T - first, d)).
  """
  b, t, d = z.shape
  k_teacher, k_prior = jax.random.split(key)
  z_in = jax.lax.stop_gradient(z) if stop_grad_input else z
  z_in = z_in if g is None else jax.vmap(symmetry.act)(g, z_in)
  if teacher is None:
    teacher = teacher_mask(k_teacher, p_teacher, b, t - 1, context)
  z_hat = predict(z_in[:, :-1], teacher, k_prior)
  if g is not None:
    z_hat = jax.vmap(symmetry.act_inverse)(g, z_hat)
  first = 1 if score_all else context
  z_pred = z_hat[:, first - 1:]
  target = jax.lax.stop_gradient(z[:, first:]) if stop_grad_target else z[:, first:]
  z_loss = jnp.mean((z_pred - target) ** 2)
  logits = decode(z_pred.reshape(-1, d))
  img_loss = reconstruction(logits, x[:, first:].reshape(logits.shape), kind)
  return z_loss, img_loss, z_pred


def symmetry_paths(config, key, b):
  """[(name, g, idx)] for each symmetry path: batch/k sequences (rows idx of the batch of b),
  each with k transforms."""
  s = config.symmetry
  if not s.k:
    return []
  groups = symmetry.parse(s.spec, config.model.z_dim)
  idx = jnp.repeat(jnp.arange(b // s.k), s.k)
  sample = functools.partial(symmetry.sample_transform, z_dim=config.model.z_dim,
                             p_identity=s.p_identity, trans_dist=s.trans_dist,
                             trans_scale=s.trans_scale)
  if s.mode == 'each':
    keys = jax.random.split(key, len(groups))
    return [(str(grp), jax.vmap(lambda k, grp=grp: sample(k, (grp,), mode='sample'))(
        jax.random.split(kg, b)), idx) for kg, grp in zip(keys, groups)]
  g = jax.vmap(lambda k: sample(k, groups, mode=s.mode))(jax.random.split(key, b))
  return [('symmetry', g, idx)]


def reverse_time(key, x, p):
  """Each sequence of x (B, T, ...) played backwards with probability p (an augmentation)."""
  flip = jax.random.bernoulli(key, p, (x.shape[0],)).reshape((-1,) + (1,) * (x.ndim - 1))
  return jnp.where(flip, x[:, ::-1], x)


def pred_scale(step, warmup):
  """Weight of the prediction terms at `step`: a linear ramp from 0 over `warmup` steps, so
  the decoder first learns to draw the ball from z (self-recon alone) before it must also
  decode the untrained prior's guesses, which hold it on the mean frame."""
  if not warmup:
    return jnp.ones((), jnp.float32)
  return jnp.clip(jnp.asarray(step, jnp.float32) / warmup, 0.0, 1.0)


def scale_gradient(tree, s):
  """tree unchanged in the forward pass; its gradient multiplied by s."""
  return jax.tree.map(lambda a: jax.lax.stop_gradient(a) + s * (a - jax.lax.stop_gradient(a)),
                      tree)


def loss_fn(params, model, config, x, key, p_teacher, with_symmetry=True, train=True,
            pred_weight=1.0):
  """Total loss and its terms for one seed's params and a batch of sequences x (B, T, ...).

  pred_weight scales every prediction term (z, image and consistency; the warm-up), or, with
  loss.warmup_prior_first, only the gradients they send into the encoder and decoder."""
  x = jnp.asarray(x)
  b, t = x.shape[:2]
  k_eps, k_rev, k_sym, k_paths, k_teach = jax.random.split(key, 5)
  if train and config.data.reverse_prob:
    x = reverse_time(k_rev, x, config.data.reverse_prob)
  flat = x.reshape((b * t,) + x.shape[2:])
  mu, logvar = model.apply(params, flat, method=SPS.encode)
  z = reparameterize(k_eps, mu, logvar) if config.model.vae else mu
  recon = model.apply(params, z, method=SPS.decode)
  w = config.loss
  terms = {'self_recon': reconstruction(recon, flat, w.kind)}
  total = w.self_recon * terms['self_recon']
  if config.model.vae:
    terms['kl'] = kl_to_standard_normal(mu, logvar)
    total += w.kl * terms['kl']
  z = z.reshape(b, t, -1)
  paths = [('identity', None, jnp.arange(b))]
  if with_symmetry:
    paths += symmetry_paths(config, k_sym, b)
  # one teacher mask for the batch: a transformed copy of a sequence is fed as its original is
  teacher = teacher_mask(k_teach, p_teacher, b, t - 1, w.rnn_min_context)

  def predict(z_in, teacher, k):
    return model.apply(params, z_in, teacher, not train, method=SPS.predict, rngs={'dropout': k})

  # False: the untrained prior's guesses cannot drag the shared decoder back to the mean frame
  dec_params = params if w.pred_decoder_grad else jax.lax.stop_gradient(params)
  z_pred_in = z
  if w.warmup_prior_first:   # the prior trains at full weight, the VAE feels the ramp
    z_pred_in, dec_params = scale_gradient((z, dec_params), pred_weight)
    pred_weight = 1.0
  decode = functools.partial(model.apply, dec_params, method=SPS.decode)
  for (name, g, idx), kp in zip(paths, jax.random.split(k_paths, len(paths))):
    z_loss, img_loss, z_hat = prediction_losses(
        predict, decode, z_pred_in[idx], x[idx], g, kp, p_teacher, w.rnn_min_context, w.kind,
        w.z_stop_grad_target, w.z_stop_grad_input, w.score_all, teacher[idx])
    terms[f'z_pred/{name}'], terms[f'image_pred/{name}'] = z_loss, img_loss
    # paths add up, not averaged
    total += pred_weight * (w.z_pred * z_loss + w.image_pred * img_loss)
    if g is None:
      z_hat_identity = z_hat
    elif w.srs:   # g^-1 prior(g z) should equal prior(z) itself, not only the data
      terms[f'srs/{name}'] = jnp.mean((z_hat - z_hat_identity[idx]) ** 2)
      total += pred_weight * w.srs * terms[f'srs/{name}']
  terms['loss'] = total
  return total, terms
