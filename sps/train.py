"""SPS training: config validation, data, the pure loss and train step, and evaluation metrics."""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from common import config as cfg
from common import data as data_lib
from common import loop
from common import train_state
from sps import data as sps_data
from sps import losses
from sps import music
from sps import metrics as sps_metrics
from sps import symmetry
from sps.models import SPS


def validate(config, num_devices=None, check_source=True):
  """Every check that can fail, before anything is compiled or written; raises ConfigError.

  check_source: that init_from holds a run (not needed to evaluate).
  """
  loop.check_fields(config, num_devices or jax.device_count())
  cfg.check_choice(config, 'data.scene', SCENES)
  cfg.check_choice(config, 'loss.kind', ('mse', 'bce', 'mse_linear'))
  cfg.check_choice(config, 'schedule.kind', ('sigmoid', 'linear', 'none'))
  cfg.check_choice(config, 'model.arch', ('conv', 'mlp'))
  cfg.check_choice(config, 'model.prior_cell', ('rnn', 'gru'))
  cfg.check_choice(config, 'model.prior_init', ('default', 'identity', 'negative_identity'))
  cfg.check_choice(config, 'symmetry.mode', symmetry.MODES)
  cfg.check_choice(config, 'symmetry.trans_dist', ('normal', 'uniform'))
  for f in ('num_seeds', 'data.num_train', 'data.num_eval', 'data.num_frames',
            'model.z_dim', 'model.prior_width', 'model.prior_depth', 'optim.lr',
            'eval.batch_size', 'eval.success_threshold', 'schedule.duration',
            'collapse.max_ratio'):
    cfg.check_positive(config, f)
  for f in ('optim.grad_clip', 'optim.weight_decay', 'loss.self_recon', 'loss.image_pred',
            'loss.z_pred', 'loss.kl', 'symmetry.k', 'symmetry.trans_scale',
            'model.prior_init_noise', 'collapse.check_step', 'loss.srs', 'loss.pred_warmup',
            'optim.warmup_steps'):
    cfg.check_positive(config, f, allow_zero=True)
  cfg.check_range(config, 'symmetry.p_identity', 0.0, 1.0)
  cfg.check_range(config, 'data.reverse_prob', 0.0, 1.0)
  cfg.check_range(config, 'optim.lr_decay', 0.5, 1.0)
  cfg.check_range(config, 'model.enc_leak', 0.0, 1.0)
  cfg.check_range(config, 'model.dec_leak', 0.0, 1.0)
  cfg.check_range(config, 'model.prior_dropout', 0.0, 0.95)
  cfg.check_range(config, 'loss.rnn_min_context', 1, config.data.num_frames - 1)
  cfg.check(config.data.num_train >= config.batch_size, 'data.num_train', config.data.num_train,
            f'must be >= batch_size ({config.batch_size})')
  cfg.check(not (config.model.dec_mean_init and config.model.arch == 'mlp'),
            'model.dec_mean_init', True, 'the mlp decoder has a per-output bias already')
  if config.data.scene == 'music':
    cfg.check(config.model.arch == 'mlp', 'model.arch', config.model.arch,
              'music spectrograms need the mlp encoder/decoder (model.arch=mlp)')
    cfg.check(config.data.num_frames == len(music.IONIAN), 'data.num_frames',
              config.data.num_frames, f'a melody has {len(music.IONIAN)} notes')
    cfg.check(not config.data.path, 'data.path', config.data.path, 'music is generated only')
  if config.symmetry.k:
    cfg.check_divisible(config, 'batch_size', config.symmetry.k,
                        'batch/k sequences get k transforms each (symmetry.k)')
    try:
      groups = symmetry.parse(config.symmetry.spec, config.model.z_dim)
    except ValueError as e:
      raise cfg.ConfigError(f'config.symmetry.spec={config.symmetry.spec!r} is invalid: {e}') from None
    cfg.check(len(groups) > 0, 'symmetry.spec', config.symmetry.spec,
              'name at least one group, or set symmetry.k=0 for no symmetry')
  if config.init_from and check_source:
    cfg.check(os.path.exists(os.path.join(config.init_from, 'config.json')), 'init_from',
              config.init_from, 'must be the workdir of an SPS run (it has no config.json)')


SCENES = sps_data.SCENES + ('music',)


def make_model(config, frame_shape=None):
  m = config.model
  frame_shape = frame_shape or frame_shape_of(config)
  return SPS(z_dim=m.z_dim, enc_channels=tuple(m.enc_channels), dec_hidden=tuple(m.dec_hidden),
             dec_channels=tuple(m.dec_channels), prior_width=m.prior_width,
             prior_depth=m.prior_depth, prior_cell=m.prior_cell, prior_dropout=m.prior_dropout,
             prior_init=m.prior_init, prior_init_noise=m.prior_init_noise,
             conv_impl=config.conv_impl, dec_last_relu=m.dec_last_relu,
             dec_pixel_bias=m.dec_mean_init, enc_leak=m.enc_leak, dec_leak=m.dec_leak,
             logvar_init=m.logvar_init, arch=m.arch, frame_shape=frame_shape,
             mlp_hidden=tuple(m.mlp_hidden))


def frame_shape_of(config):
  if config.data.scene == 'music':
    return (music.FRAMES_PER_NOTE, music.NUM_BINS)
  return IMAGE_SHAPE


def make_optimizer(config):
  o = config.optim
  lr = o.lr
  if o.warmup_steps or o.lr_decay != 1.0:   # linear from 0 over warmup_steps, then the decay
    lr = optax.warmup_exponential_decay_schedule(0.0, o.lr, o.warmup_steps, 1, o.lr_decay)
  return train_state.make_optimizer(lr, o.grad_clip, o.weight_decay)


def load_data(config, split, heldout=None):
  """{'frames': (N, T, *frame_shape), 'positions': (N, T, P)} (+ 'timbre' for music), numpy.

  Images are in [0, 1]; music frames are standardised log-magnitude spectra and the position
  is the pitch. Music eval data uses the held-out timbres unless heldout=False.
  """
  d = config.data
  n = d.num_train if split == 'train' else d.num_eval
  if d.scene == 'music':
    heldout = split == 'eval' if heldout is None else heldout
    data = music.make_dataset(n, config.seed, split, num_timbres=d.num_timbres,
                              heldout_timbres=heldout)
    data = {k: data[k] for k in ('frames', 'positions', 'timbre')}
  elif d.path:
    data = sps_data.load_folder(d.path, num_frames=d.num_frames)
    n_train = len(data['frames']) - min(d.num_eval, len(data['frames']) // 5)
    sl = slice(0, min(n, n_train)) if split == 'train' else slice(n_train, None)
    data = {k: v[sl] for k, v in data.items()}
  else:
    data = sps_data.make_dataset(d.scene, n, seed=config.seed, split=split,
                                 num_frames=d.num_frames)
  return {k: np.asarray(v, np.int32 if k == 'timbre' else np.float32) for k, v in data.items()}


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
  img_loss = losses.reconstruction(logits, x[:, first:].reshape(logits.shape), kind)
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
  z = losses.reparameterize(k_eps, mu, logvar) if config.model.vae else mu
  recon = model.apply(params, z, method=SPS.decode)
  w = config.loss
  terms = {'self_recon': losses.reconstruction(recon, flat, w.kind)}
  total = w.self_recon * terms['self_recon']
  if config.model.vae:
    terms['kl'] = losses.kl_to_standard_normal(mu, logvar)
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


IMAGE_SHAPE = (32, 32, 3)


def seed_keys(key, num_seeds):
  """One init key per seed; seed 0 of a one-seed run uses `key` itself."""
  return key[None] if num_seeds == 1 else jax.random.split(key, num_seeds)


def make_init(config, frame_shape=None, source_params=None, mean_logits=None, init_frames=None):
  """(model, optimizer, init_state(key) -> TrainState stacked over config.num_seeds).

  Every leaf of the state has a leading seed axis (size num_seeds, also for one seed), so one
  code path trains, checkpoints and evaluates any number of random inits. source_params
  (stacked over 1 or num_seeds seeds) are embedded into the fresh parameters (see embed).
  mean_logits (the logits of the training mean frame) start the decoder's per-pixel bias
  when model.dec_mean_init is set: the decoder then draws the background from step 0 instead
  of spending its first ~1000 Adam steps (lr 1e-3 moves a weight ~1e-3 a step) on it.
  init_frames (N, *frame_shape) are encoded to rescale the mu head when model.mu_data_init
  is set (see standardize_mu).
  """
  frame_shape = frame_shape or frame_shape_of(config)
  model, tx = make_model(config, frame_shape), make_optimizer(config)
  example = jnp.zeros((1, config.data.num_frames) + tuple(frame_shape), jnp.float32)

  def init_one(key, src):
    params = model.init(key, example)
    if config.model.dec_mean_init and mean_logits is not None:
      params = set_pixel_bias(params, mean_logits, config.model.dec_zero_last)
    if config.model.mu_data_init and init_frames is not None:
      params = standardize_mu(model, params, init_frames)
    if src is not None:
      params = embed(src, params)
    return train_state.create(params, tx)

  def init_state(key):
    keys = seed_keys(key, config.num_seeds)
    if source_params is None:
      return jax.vmap(lambda k: init_one(k, None))(keys)
    src = jax.tree.map(lambda a: jnp.broadcast_to(a, (config.num_seeds,) + a.shape[1:]),
                       source_params)
    return jax.vmap(init_one)(keys, src)

  return model, tx, init_state


def standardize_mu(model, params, frames):
  """A data-dependent init of the mu head (as in weight normalisation's, Salimans & Kingma
  2016): mu gets mean 0 and std 1 per dim over `frames`. At the default init mu varies by only
  ~0.03 across frames (the ball is ~2% of the pixels), so the decoder barely sees z."""
  mu, _ = model.apply(params, frames, method=SPS.encode)
  mean, std = jnp.mean(mu, 0), jnp.std(mu, 0) + 1e-8
  head = params['params']['encoder']['mu']
  head = {'kernel': head['kernel'] / std, 'bias': (head['bias'] - mean) / std}
  enc = {**params['params']['encoder'], 'mu': head}
  return {**params, 'params': {**params['params'], 'encoder': enc}}


def set_pixel_bias(params, mean_logits, zero_last=False):
  """The decoder's per-pixel bias set to mean_logits; zero_last also zeroes its last
  transposed conv, so it starts by drawing exactly the mean frame for every z."""
  dec = dict(params['params']['decoder'])
  dec['pixel_bias'] = jnp.asarray(mean_logits, dec['pixel_bias'].dtype).reshape(
      dec['pixel_bias'].shape)
  if zero_last:
    last = max(k for k in dec if k.startswith('ConvTranspose'))
    dec[last] = jax.tree.map(jnp.zeros_like, dec[last])
  return {**params, 'params': {**params['params'], 'decoder': dec}}


def embed(source, fresh):
  """fresh with each of source's arrays written into its leading block (a wider z keeps the
  old dims' weights and starts the new ones fresh); the trees must have the same structure."""
  def put(s, f):
    if s.ndim != f.ndim or any(a > b for a, b in zip(s.shape, f.shape)):
      raise cfg.ConfigError(f'config.init_from: a parameter of shape {s.shape} does not fit '
                            f'into {f.shape}; only z_dim may grow')
    return f.at[tuple(slice(0, n) for n in s.shape)].set(s.astype(f.dtype))
  if jax.tree.structure(source) != jax.tree.structure(fresh):
    raise cfg.ConfigError('config.init_from: the source run has a different architecture '
                          '(its parameter tree differs); only z_dim may grow')
  return jax.tree.map(put, source, fresh)


def load_source_params(config):
  """The params of config.init_from's newest checkpoint, stacked over its seeds (host arrays)."""
  src_config = cfg.load(config.init_from)
  _, _, src_init = make_init(src_config)
  state, _ = loop.restore(config.init_from, src_init, src_config.seed)
  n = src_config.get('num_seeds', 1)
  cfg.check(n in (1, config.num_seeds), 'init_from', config.init_from,
            f'the source run has {n} seeds; use num_seeds={n} or a one-seed source')
  return jax.device_get(state.params)


def make_train_step(config, model, tx):
  """(state, batch, key) -> (state, metrics): every seed takes one step on the shared batch.

  A seed whose loss or gradients are not finite keeps its parameters (its update is skipped
  and counted in `skipped_seeds`), so one diverging init does not end a many-seed run; the
  losses are averaged over the seeds that stepped (NaN, which stops the run, when none did).
  """
  def one_seed(state, frames, key):
    key = jax.random.fold_in(key, state.step)   # a fresh key per step, never reused
    p = losses.teacher_prob(state.step, config.schedule.kind, config.schedule.duration)
    scale = pred_scale(state.step, config.loss.pred_warmup)
    grads, terms = jax.grad(loss_fn, has_aux=True)(state.params, model, config, frames, key, p,
                                                   pred_weight=scale)
    new, norms = train_state.apply_gradients(state, grads, tx)
    ok = jnp.isfinite(terms['loss']) & jnp.isfinite(norms['grad_norm'])
    new = new.replace(params=_where(ok, new.params, state.params),
                      opt_state=_where(ok, new.opt_state, state.opt_state))
    return new, {**terms, **norms, 'teacher_prob': p, 'pred_weight': scale}, ok

  def train_step(state, batch, key):
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(config.num_seeds))
    state, terms, ok = jax.vmap(one_seed, in_axes=(0, None, 0))(state, batch['frames'], keys)
    mean = lambda v: jnp.sum(jnp.where(ok, v, 0.0)) / jnp.sum(ok)
    metrics = {k: mean(v) for k, v in terms.items()}
    metrics['skipped_seeds'] = jnp.sum(~ok)
    return state, metrics

  return train_step


def _where(ok, new, old):
  return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)


def make_task(config):
  """The loop.Task of pure functions for this config (data is built here, once)."""
  source = load_source_params(config) if config.init_from else None
  train = load_data(config, 'train')
  mean = frame_logits(train['frames'].mean((0, 1)), config.loss.kind)
  frames = train['frames'][:64].reshape((-1,) + train['frames'].shape[2:])
  model, tx, init_state = make_init(config, source_params=source, mean_logits=mean,
                                    init_frames=frames)

  def train_batch(step):
    idx = data_lib.epoch_batch_indices(step, len(train['frames']), config.batch_size, config.seed)
    return {'frames': train['frames'][idx]}

  evaluator = Evaluator(config, model)
  return loop.Task(init=init_state, train_step=make_train_step(config, model, tx),
                   train_batch=train_batch, evaluate=evaluator.summary)


def seed_params(params, i):
  """Seed i's parameters from a stacked tree."""
  return jax.tree.map(lambda a: a[i], params)


class Evaluator:
  """Held-out metrics of every seed: losses with the prior rolling out on its own, linear
  projection, a nearest-neighbour read-out of the positions (and, for music, pitch R² per timbre
  on held-out and training timbres)."""

  def __init__(self, config, model, data=None):
    self.config, self.model = config, model
    self.data = data if data is not None else load_data(config, 'eval')
    self.seen_timbres = (load_data(config, 'eval', heldout=False)
                         if config.data.scene == 'music' else None)
    encode = lambda p, x: model.apply(p, x, method=SPS.encode)[0]
    eval_losses = lambda p, x, k: loss_fn(p, model, config, x, k, 0.0, with_symmetry=False,
                                          train=False)[1]
    self._encode = jax.jit(jax.vmap(encode, in_axes=(0, None)))
    self._losses = jax.jit(jax.vmap(eval_losses, in_axes=(0, None, None)))
    frames = self.data['frames']
    self.baseline_recon = float(losses.reconstruction(
        mean_frame_logits(frames, config.loss.kind), frames, config.loss.kind))

  def encode(self, params, data=None):
    """mu of every seed for every frame of `data` (default: the eval set): (S, N, T, d)."""
    frames = (data or self.data)['frames']
    n, t = frames.shape[:2]
    flat = frames.reshape((n * t,) + frames.shape[2:])
    bs = self.config.eval.batch_size * t
    mus = [self._encode(params, flat[i:i + bs]) for i in range(0, len(flat), bs)]
    mus = np.concatenate(jax.device_get(mus), axis=1)
    return mus.reshape((len(mus), n, t, -1))

  def seed_metrics(self, params):
    """{name: (S,) array}, one value per seed."""
    frames = self.data['frames']
    bs = self.config.eval.batch_size
    key = jax.random.PRNGKey(0)   # fixed: the same eval every time
    starts = range(0, len(frames), bs)
    chunks = [jax.device_get(self._losses(params, frames[i:i + bs], key)) for i in starts]
    sizes = [len(frames[i:i + bs]) for i in starts]
    out = {k.split('/')[0]: np.average(np.stack([c[k] for c in chunks]), axis=0, weights=sizes)
           for k in chunks[0]}
    out['self_recon_ratio'] = out['self_recon'] / self.baseline_recon
    mu = self.encode(params)
    pos = self.data['positions']
    axes = np.stack([sps_metrics.linear_projection(m.reshape(-1, m.shape[-1]),
                                                   pos.reshape(-1, pos.shape[-1]))[0]
                     for m in mu])                                     # (S, P)
    out['linear_projection_mse'] = axes.mean(1)
    for i in range(axes.shape[1]):
      out[f'r2_axis{i}'] = 1.0 - axes[:, i]
    # is the position in z at all? (low here, high above: a curved code, not disentangled)
    out['knn_projection_mse'] = np.array([sps_metrics.knn_projection(m, pos).mean() for m in mu])
    if self.seen_timbres is not None:
      out['pitch_r2_heldout'] = self.pitch_r2(mu, self.data)
      out['pitch_r2_train_timbres'] = self.pitch_r2(self.encode(params, self.seen_timbres),
                                                    self.seen_timbres)
    return out

  @staticmethod
  def pitch_r2(mu, data):
    """Per seed, the mean over timbres of R² of a linear fit of pitch from z: (S,)."""
    timbre = np.repeat(data['timbre'], data['positions'].shape[1])
    pitch = data['positions'].reshape(-1)
    return np.array([np.mean([sps_metrics.r2(m.reshape(-1, m.shape[-1])[timbre == c],
                                             pitch[timbre == c]) for c in np.unique(timbre)])
                     for m in mu])

  def summary(self, state):
    return summarize(jax.device_get(self.seed_metrics(state.params)), int(np.max(state.step)),
                     self.config)


def summarize(per_seed, step, config):
  """Scalar metrics for the log: the median over seeds of every metric, each seed's linear
  projection MSE and self-recon ratio, the success rate and the collapse detector's count."""
  out = {k: float(np.median(v)) for k, v in per_seed.items()}
  lp = per_seed['linear_projection_mse']
  out['success_rate'] = float(np.mean(lp < config.eval.success_threshold))
  collapsed = collapsed_seeds(per_seed['self_recon_ratio'], step, config.collapse)
  out['collapsed_seeds'] = len(collapsed)
  if collapsed:
    print(f'\ncollapse detector: seed(s) {collapsed} have self-recon at '
          f'{np.round(per_seed["self_recon_ratio"][collapsed], 2).tolist()} x the mean-frame '
          f'loss after {step} steps (> collapse.max_ratio={config.collapse.max_ratio}): '
          'their z has most likely collapsed')
  if len(lp) > 1:
    for i, v in enumerate(lp):
      out[f'linear_projection_mse/seed{i}'] = float(v)
      out[f'self_recon_ratio/seed{i}'] = float(per_seed['self_recon_ratio'][i])
  return out


def mean_frame_logits(frames, kind):
  """Outputs that decode to the mean frame, shaped like frames: the loss of a model whose z
  carries nothing."""
  return np.broadcast_to(frame_logits(frames.mean((0, 1)), kind), frames.shape)


def frame_logits(frame, kind):
  """The outputs that decode to `frame` (an image in [0, 1], or a spectrum for mse_linear)."""
  frame = np.asarray(frame, np.float32)
  if kind == 'mse_linear':
    return frame
  p = np.clip(frame, 1e-4, 1 - 1e-4)
  return np.log(p) - np.log1p(-p)


def collapsed_seeds(ratio, step, collapse):
  """Seeds whose self-recon is still > max_ratio x the mean-frame loss at step >= check_step.

  The log found a collapsed z can be told early from self-recon alone and never recovers.
  """
  if step < collapse.check_step:
    return []
  return [int(i) for i in np.flatnonzero(np.asarray(ratio) > collapse.max_ratio)]
