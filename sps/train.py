"""SPS training: config validation, data, the pure loss and train step, and evaluation metrics."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from common import config as cfg
from common import data as data_lib
from common import loop
from common import train_state
from sps import data as sps_data
from sps import losses
from sps import metrics as sps_metrics
from sps import symmetry
from sps.models import SPS


def validate(config, num_devices=None):
  """Every check that can fail, before anything is compiled or written; raises ConfigError."""
  num_devices = num_devices or jax.device_count()
  cfg.check_choice(config, 'data.scene', sps_data.SCENES)
  cfg.check_choice(config, 'conv_impl', ('auto', 'matmul', 'lax'))
  cfg.check_choice(config, 'loss.kind', ('mse', 'bce'))
  cfg.check_choice(config, 'schedule.kind', ('sigmoid', 'linear', 'none'))
  cfg.check_choice(config, 'model.prior_cell', ('rnn', 'gru'))
  cfg.check_choice(config, 'symmetry.mode', symmetry.MODES)
  cfg.check_choice(config, 'symmetry.trans_dist', ('normal', 'uniform'))
  cfg.check_choice(config, 'early_stopping.mode', ('min', 'max'))
  for f in ('num_steps', 'batch_size', 'log_every', 'eval_every', 'checkpoint.every',
            'checkpoint.max_to_keep', 'data.num_train', 'data.num_eval', 'data.num_frames',
            'model.z_dim', 'model.prior_width', 'model.prior_depth', 'optim.lr',
            'eval.batch_size', 'schedule.duration'):
    cfg.check_positive(config, f)
  for f in ('optim.grad_clip', 'optim.weight_decay', 'loss.self_recon', 'loss.image_pred',
            'loss.z_pred', 'loss.kl', 'symmetry.k', 'symmetry.trans_scale'):
    cfg.check_positive(config, f, allow_zero=True)
  cfg.check_range(config, 'symmetry.p_identity', 0.0, 1.0)
  cfg.check_range(config, 'loss.rnn_min_context', 1, config.data.num_frames - 1)
  cfg.check_divisible(config, 'batch_size', num_devices,
                      f'the batch is split over {num_devices} devices')
  cfg.check(config.data.num_train >= config.batch_size, 'data.num_train', config.data.num_train,
            f'must be >= batch_size ({config.batch_size})')
  if config.symmetry.k:
    cfg.check_divisible(config, 'batch_size', config.symmetry.k,
                        'batch/k sequences get k transforms each (symmetry.k)')
    try:
      groups = symmetry.parse(config.symmetry.spec, config.model.z_dim)
    except ValueError as e:
      raise cfg.ConfigError(f'config.symmetry.spec={config.symmetry.spec!r} is invalid: {e}') from None
    cfg.check(len(groups) > 0, 'symmetry.spec', config.symmetry.spec,
              'name at least one group, or set symmetry.k=0 for no symmetry')


def make_model(config):
  m = config.model
  return SPS(z_dim=m.z_dim, enc_channels=tuple(m.enc_channels), dec_hidden=tuple(m.dec_hidden),
             dec_channels=tuple(m.dec_channels), prior_width=m.prior_width,
             prior_depth=m.prior_depth, prior_cell=m.prior_cell, conv_impl=config.conv_impl)


def make_optimizer(config):
  return train_state.make_optimizer(config.optim.lr, config.optim.grad_clip,
                                    config.optim.weight_decay)


def load_data(config, split):
  """{'frames': (N, T, 32, 32, 3) in [0, 1], 'positions': (N, T, P)} as numpy arrays."""
  d = config.data
  n = d.num_train if split == 'train' else d.num_eval
  if d.path:
    data = sps_data.load_folder(d.path, num_frames=d.num_frames)
    n_train = len(data['frames']) - min(d.num_eval, len(data['frames']) // 5)
    sl = slice(0, min(n, n_train)) if split == 'train' else slice(n_train, None)
    data = {k: v[sl] for k, v in data.items()}
  else:
    data = sps_data.make_dataset(d.scene, n, seed=config.seed, split=split,
                                 num_frames=d.num_frames)
  return {k: np.asarray(v, np.float32) for k, v in data.items()}


def prediction_losses(predict, decode, z, x, g, key, p_teacher, context, kind='mse'):
  """One prior path: predict z[c:] from g.z, map back with g^-1, score in z and in pixels.

  predict(z_in, teacher) -> predictions of z_in[1:]; decode(z) -> frame logits.
  z: (B, T, d) encoded sequences; x: (B, T, H, W, C) frames; g: batched (A, b), or None for
  the identity path. The prior is unrolled once per path. Returns (z loss, image loss).
  """
  b, t, d = z.shape
  z_in = z if g is None else jax.vmap(symmetry.act)(g, z)
  teacher = jax.random.bernoulli(key, p_teacher, (b, t - 1)) | (jnp.arange(t - 1) < context)[None]
  z_hat = predict(z_in[:, :-1], teacher)
  if g is not None:
    z_hat = jax.vmap(symmetry.act_inverse)(g, z_hat)
  z_pred = z_hat[:, context - 1:]
  z_loss = jnp.mean((z_pred - jax.lax.stop_gradient(z[:, context:])) ** 2)
  logits = decode(z_pred.reshape(-1, d))
  img_loss = losses.reconstruction(logits, x[:, context:].reshape(logits.shape), kind)
  return z_loss, img_loss


def symmetry_paths(config, key, z, x):
  """[(name, g, z, x)] for each symmetry path: batch/k sequences, each with k transforms."""
  s = config.symmetry
  if not s.k:
    return []
  groups = symmetry.parse(s.spec, config.model.z_dim)
  b = z.shape[0]
  idx = jnp.repeat(jnp.arange(b // s.k), s.k)
  z, x = z[idx], x[idx]
  sample = functools.partial(symmetry.sample_transform, z_dim=config.model.z_dim,
                             p_identity=s.p_identity, trans_dist=s.trans_dist,
                             trans_scale=s.trans_scale)
  if s.mode == 'each':
    keys = jax.random.split(key, len(groups))
    return [(str(grp), jax.vmap(lambda k, grp=grp: sample(k, (grp,), mode='sample'))(
        jax.random.split(kg, b)), z, x) for kg, grp in zip(keys, groups)]
  g = jax.vmap(lambda k: sample(k, groups, mode=s.mode))(jax.random.split(key, b))
  return [('symmetry', g, z, x)]


def loss_fn(params, model, config, x, key, p_teacher, with_symmetry=True):
  """Total loss and its terms for a batch of sequences x (B, T, H, W, C)."""
  b, t = x.shape[:2]
  k_eps, k_id, k_sym, k_paths = jax.random.split(key, 4)
  flat = x.reshape((b * t,) + x.shape[2:])
  mu, logvar = model.apply(params, flat, method=SPS.encode)
  z = losses.reparameterize(k_eps, mu, logvar) if config.model.vae else mu
  recon = model.apply(params, z, method=SPS.decode)
  w = config.loss
  terms = {'self_recon': losses.reconstruction(recon, flat, w.kind)}
  total = w.self_recon * terms['self_recon']
  if config.model.vae:
    terms['kl'] = losses.kl_to_standard_normal(mu, logvar)
    total += w.kl * terms['kl']
  z = z.reshape(b, t, -1)
  paths = [('identity', None, z, x)]
  if with_symmetry:
    paths += symmetry_paths(config, k_sym, z, x)
  predict = functools.partial(model.apply, params, method=SPS.predict)
  decode = functools.partial(model.apply, params, method=SPS.decode)
  for (name, g, zp, xp), kp in zip(paths, jax.random.split(k_paths, len(paths))):
    z_loss, img_loss = prediction_losses(predict, decode, zp, xp, g, kp, p_teacher,
                                         w.rnn_min_context, w.kind)
    terms[f'z_pred/{name}'], terms[f'image_pred/{name}'] = z_loss, img_loss
    total += w.z_pred * z_loss + w.image_pred * img_loss   # paths add up, not averaged
  terms['loss'] = total
  return total, terms


IMAGE_SHAPE = (32, 32, 3)


def make_init(config):
  """(model, optimizer, init_state(key) -> TrainState); needs no data."""
  model, tx = make_model(config), make_optimizer(config)
  example = jnp.zeros((1, config.data.num_frames) + IMAGE_SHAPE, jnp.float32)
  return model, tx, lambda key: train_state.create(model.init(key, example), tx)


def make_task(config):
  """The loop.Task of pure functions for this config (data is built here, once)."""
  model, tx, init_state = make_init(config)
  train = load_data(config, 'train')

  def train_step(state, batch, key):
    key = jax.random.fold_in(key, state.step)   # a fresh key per step, never reused
    p = losses.teacher_prob(state.step, config.schedule.kind, config.schedule.duration)
    grads, terms = jax.grad(loss_fn, has_aux=True)(state.params, model, config,
                                                    batch['frames'], key, p)
    state, norms = train_state.apply_gradients(state, grads, tx)
    return state, {**terms, **norms, 'teacher_prob': p}

  def train_batch(step):
    idx = data_lib.epoch_batch_indices(step, len(train['frames']), config.batch_size, config.seed)
    return {'frames': train['frames'][idx]}

  evaluator = Evaluator(config, model)
  return loop.Task(init=init_state, train_step=train_step, train_batch=train_batch,
                   evaluate=lambda state: evaluator.metrics(state.params))


class Evaluator:
  """Metrics on the held-out set: losses with the prior rolling out on its own, and linear projection."""

  def __init__(self, config, model, data=None):
    self.config, self.model = config, model
    self.data = data if data is not None else load_data(config, 'eval')
    self._encode = jax.jit(lambda p, x: model.apply(p, x, method=SPS.encode)[0])
    self._losses = jax.jit(lambda p, x, k: loss_fn(p, model, config, x, k, 0.0,
                                                   with_symmetry=False)[1])

  def encode(self, params):
    """mu for every eval frame: (N, T, d)."""
    frames = self.data['frames']
    n, t = frames.shape[:2]
    flat = frames.reshape((n * t,) + frames.shape[2:])
    bs = self.config.eval.batch_size * t
    mus = [self._encode(params, flat[i:i + bs]) for i in range(0, len(flat), bs)]
    return np.concatenate(jax.device_get(mus)).reshape(n, t, -1)

  def metrics(self, params):
    frames = self.data['frames']
    bs = self.config.eval.batch_size
    key = jax.random.PRNGKey(0)   # fixed: the same eval every time
    chunks = [jax.device_get(self._losses(params, frames[i:i + bs], key))
              for i in range(0, len(frames), bs)]
    sizes = [len(frames[i:i + bs]) for i in range(0, len(frames), bs)]
    out = {f'{k.split("/")[0]}': float(np.average([c[k] for c in chunks], weights=sizes))
           for k in chunks[0]}
    mu = self.encode(params)
    pos = self.data['positions']
    mse_axis, _, _ = sps_metrics.linear_projection(mu.reshape(-1, mu.shape[-1]),
                                                   pos.reshape(-1, pos.shape[-1]))
    out['linear_projection_mse'] = float(np.mean(mse_axis))
    for i, m in enumerate(mse_axis):
      out[f'r2_axis{i}'] = float(1.0 - m)
    return out
