"""SPS training: config validation, data, init (with its data-dependent starts) and the pure
train step, bound into the loop's Task. The objective is in losses.py, the metrics in
evaluation.py."""
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
from sps import evaluation
from sps import losses
from sps import music
from sps import symmetry
from sps.models import SPS

SCENES = sps_data.SCENES + ('music',)
IMAGE_SHAPE = (32, 32, 3)


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


def make_evaluator(config, model):
  """The evaluation.Evaluator of config's held-out data (for music also the training timbres')."""
  data = load_data(config, 'eval')
  seen = load_data(config, 'eval', heldout=False) if config.data.scene == 'music' else None
  return evaluation.Evaluator(config, model, data, seen)


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
    scale = losses.pred_scale(state.step, config.loss.pred_warmup)
    grads, terms = jax.grad(losses.loss_fn, has_aux=True)(state.params, model, config, frames,
                                                          key, p, pred_weight=scale)
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
  mean = evaluation.frame_logits(train['frames'].mean((0, 1)), config.loss.kind)
  frames = train['frames'][:64].reshape((-1,) + train['frames'].shape[2:])
  model, tx, init_state = make_init(config, source_params=source, mean_logits=mean,
                                    init_frames=frames)

  def train_batch(step):
    idx = data_lib.epoch_batch_indices(step, len(train['frames']), config.batch_size, config.seed)
    return {'frames': train['frames'][idx]}

  evaluator = make_evaluator(config, model)
  return loop.Task(init=init_state, train_step=make_train_step(config, model, tx),
                   train_batch=train_batch, evaluate=evaluator.summary)


def seed_params(params, i):
  """Seed i's parameters from a stacked tree."""
  return jax.tree.map(lambda a: a[i], params)
