"""vle training: config validation, the models from a config, token counts, data and the pure
train step, bound into the loop's Task. The objective is in losses.py, the metrics in
evaluation.py.

The train state's params are {'vle': ..., 'baseline': ...}: the baseline VAE trains on the same
batches in the same step, with its own optimizer chain (optax.multi_transform), so clipping one
never rescales the other.
"""
import functools
import json

import jax
import ml_collections
import jax.numpy as jnp
import numpy as np
import optax

from common import config as cfg
from common import loop
from common import train_state
from vle import data as D
from vle import evaluation
from vle import losses
from vle import models

DATA_STREAM, TEST_STREAM, VAE_STREAM = 1, 2, 3   # fold_in tags of the key streams
MIN_SSIM_SIZE = 11                               # the SSIM window


def validate(config, num_devices=None):
  """Every check that can fail, before anything is compiled or written; raises ConfigError."""
  loop.check_fields(config, num_devices or jax.device_count())
  d, m, t, e = config.data, config.model, config.tokens, config.eval
  cfg.check_choice(config, 'data.source', D.SOURCES)
  cfg.check_choice(config, 'data.background', D.BACKGROUNDS)
  cfg.check_choice(config, 'model.kind', models.KINDS)
  for f in ('data.size', 'data.min_objects', 'data.max_objects',
            'model.token_channels', 'model.saliency_features', 'model.norm_eps',
            'tokens.train_max', 'tokens.mean_start', 'tokens.mean_end', 'optim.lr',
            'eval.num_test', 'eval.batch_size', 'eval.tokens', 'eval.ari_tokens',
            'eval.mse_threshold'):
    cfg.check_positive(config, f)
  for f in ('model.memory', 'optim.grad_clip', 'optim.weight_decay', 'loss.mask_sharpness',
            'loss.mask_binary', 'loss.mask_empty', 'loss.mask_previous', 'loss.mask_accumulated',
            'baseline.scale', 'baseline.kl_weight', 'tokens.ramp_steps', 'data.num_images',
            'eval.examples'):
    cfg.check_positive(config, f, allow_zero=True)
  cfg.check_range(config, 'loss.final_weight', 0.0, 0.5)
  cfg.check(d.min_objects <= d.max_objects, 'data.min_objects', d.min_objects,
            f'must be <= data.max_objects ({d.max_objects})')
  cfg.check(len(d.shapes) > 0 and all(s in D.SHAPES for s in d.shapes), 'data.shapes',
            tuple(d.shapes), f'must be a non-empty subset of {", ".join(D.SHAPES)}')
  cfg.check(len(d.radius) == 2 and 0 < d.radius[0] <= d.radius[1] < 0.5, 'data.radius',
            tuple(d.radius), 'must be (low, high) with 0 < low <= high < 0.5')
  for f in ('model.channels', 'model.decoder_channels'):
    cfg.check(len(cfg.get(config, f)) > 0 and all(c > 0 for c in cfg.get(config, f)), f,
              tuple(cfg.get(config, f)), 'must be positive channel counts')
  cfg.check(len(m.decoder_channels) == len(m.channels), 'model.decoder_channels',
            tuple(m.decoder_channels), f'needs {len(m.channels)} entries, one upsampling per '
            'encoder downsampling (model.channels)')
  k = 2 ** len(m.channels)
  cfg.check(d.size % k == 0, 'data.size', d.size,
            f'must be divisible by {k} (one stride-2 conv per model.channels entry)')
  cfg.check(d.size >= MIN_SSIM_SIZE, 'data.size', d.size,
            f'must be >= {MIN_SSIM_SIZE} (the SSIM window)')
  for f in ('mean_start', 'mean_end'):
    cfg.check(1 <= t[f] <= t.train_max, f'tokens.{f}', t[f],
              f'must be in [1, tokens.train_max={t.train_max}]')
  cfg.check(e.ari_tokens <= e.tokens, 'eval.ari_tokens', e.ari_tokens,
            f'must be <= eval.tokens ({e.tokens})')
  if d.source == 'tfds':
    cfg.check(bool(d.tfds_name), 'data.tfds_name', d.tfds_name,
              "name a prepared TFDS image dataset, e.g. 'cifar10' (data.source='tfds')")
  if d.source == 'folder':
    cfg.check(bool(d.folder), 'data.folder', d.folder,
              "set it to a folder of images (data.source='folder')")


# ---------------------------------------------------------------------------
# Models and optimizer.

def make_vle(config):
  m = config.model
  return models.VLE(kind=m.kind, channels=tuple(m.channels), memory=m.memory,
                    token_channels=m.token_channels, decoder_channels=tuple(m.decoder_channels),
                    saliency_features=m.saliency_features, saliency_memory=m.saliency_memory,
                    norm_eps=m.norm_eps, conv_impl=config.conv_impl)


def make_vae(config, scale):
  m = config.model
  width = lambda cs: tuple(max(1, round(c * scale)) for c in cs)
  return models.VAE(channels=width(m.channels), token_channels=m.token_channels,
                    decoder_channels=width(m.decoder_channels), norm_eps=m.norm_eps,
                    conv_impl=config.conv_impl)


def num_params(tree):
  return int(sum(np.prod(l.shape) for l in jax.tree.leaves(tree)))


def _example(config):
  return jnp.zeros((1, config.data.size, config.data.size, 3), jnp.float32)


def init_vle(vle, key, x):
  return vle.init(key, x, jnp.ones((x.shape[0],), bool))


def init_vae(vae, key, x):
  return vae.init(key, x, jax.random.PRNGKey(0))


@functools.lru_cache(maxsize=16)
def _matching_scale(config_json):
  """The VAE channel multiplier whose parameter count is closest to the VLE's (bisection)."""
  config = ml_collections.ConfigDict(json.loads(config_json))
  x, key = _example(config), jax.random.PRNGKey(0)
  shapes = lambda init, net: jax.eval_shape(functools.partial(init, net), key, x)
  target = num_params(shapes(init_vle, make_vle(config)))
  count = lambda s: num_params(shapes(init_vae, make_vae(config, s)))
  lo, hi = 0.05, 16.0
  for _ in range(16):
    mid = (lo * hi) ** 0.5
    lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
  return min((lo, hi), key=lambda s: abs(count(s) - target))


def baseline_scale(config):
  if config.baseline.scale:
    return float(config.baseline.scale)
  keep = {'conv_impl': config.conv_impl, 'data': {'size': config.data.size},
          'model': config.model.to_dict()}
  return _matching_scale(json.dumps(keep, sort_keys=True, default=list))


def make_models(config):
  """{'vle': VLE, 'baseline': VAE (when enabled)}."""
  out = {'vle': make_vle(config)}
  if config.baseline.enabled:
    out['baseline'] = make_vae(config, baseline_scale(config))
  return out


def make_optimizer(config, names):
  o = config.optim
  chain = lambda: train_state.make_optimizer(o.lr, o.grad_clip, o.weight_decay)
  return optax.multi_transform({n: chain() for n in names}, {n: n for n in names})


def make_init(config):
  """(models, optimizer, init_state(key) -> TrainState); needs no data."""
  nets = make_models(config)
  tx = make_optimizer(config, tuple(nets))
  x = _example(config)

  def init_state(key):
    k_vle, k_vae = jax.random.split(key)
    params = {'vle': init_vle(nets['vle'], k_vle, x)}
    if 'baseline' in nets:
      params['baseline'] = init_vae(nets['baseline'], k_vae, x)
    return train_state.create(params, tx)

  return nets, tx, init_state


# ---------------------------------------------------------------------------
# Token counts.

def mean_tokens(config, step):
  """The mean sampled token count at `step`: linear from mean_start to mean_end over the ramp."""
  t = config.tokens
  frac = jnp.clip(step / max(1, t.ramp_steps), 0.0, 1.0)
  return t.mean_start + frac * (t.mean_end - t.mean_start)


def sample_counts(key, batch, config, step):
  """Token counts (batch,) int32 in [1, train_max]: 1 + Binomial(train_max - 1, p) with the
  schedule's mean 1 + (train_max - 1) p."""
  n = config.tokens.train_max
  p = (mean_tokens(config, step) - 1.0) / max(n - 1, 1)
  extra = jax.random.bernoulli(key, p, (batch, n - 1)).sum(-1)   # (batch,); zeros when n = 1
  return (1 + extra).astype(jnp.int32)


# ---------------------------------------------------------------------------
# Data.

def load_real(config, split):
  """Real images (n, size, size, 3) uint8 for 'train' or 'test', as the config names them."""
  d = config.data
  if d.source == 'tfds':
    name_split = d.tfds_split if split == 'train' else d.tfds_eval_split
    num = d.num_images if split == 'train' else config.eval.num_test
    return D.load_tfds(d.tfds_name, name_split, d.size, num or None, d.data_dir or None)
  num = d.num_images if split == 'train' else config.eval.num_test
  return D.load_folder(d.folder, split, d.size, num or None)


def scene_kwargs(config):
  d = config.data
  return dict(size=d.size, max_objects=d.max_objects, min_objects=d.min_objects,
              shapes=tuple(d.shapes), background=d.background, radius=tuple(d.radius))


def test_set(config):
  """({'image': (N, H, W, 3) float32 in [0, 1], 'segmentation' (scenes only)}, description)."""
  if config.data.source == 'scenes':
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), TEST_STREAM)
    s = jax.jit(lambda k: D.scenes(k, config.eval.num_test, **scene_kwargs(config)))(key)
    return jax.device_get(s), f'{config.eval.num_test} generated scenes (seed {config.seed})'
  images = load_real(config, 'test').astype(np.float32) / 255
  where = (f'TFDS {config.data.tfds_name} {config.data.tfds_eval_split}'
           if config.data.source == 'tfds' else f'every 10th image of {config.data.folder}')
  return {'image': images}, f'{len(images)} images ({where})'


def make_evaluator(config, nets):
  """The evaluation.Evaluator of config's test set (built at its first use)."""
  return evaluation.Evaluator(config, nets, functools.partial(test_set, config))


def make_task(config):
  """The loop.Task of pure functions for this config (real images are loaded here, once)."""
  nets, tx, init_state = make_init(config)
  root = jax.random.PRNGKey(config.seed)
  data_key = jax.random.fold_in(root, DATA_STREAM)
  vae_key = jax.random.fold_in(root, VAE_STREAM)
  pool = (jnp.asarray(load_real(config, 'train')) if config.data.source != 'scenes' else None)

  def train_step(state, batch, key):
    del key   # the VLE step is deterministic; the VAE's noise comes from its own stream
    k = jax.random.fold_in(vae_key, state.step)
    grads, metrics = jax.grad(losses.loss_fn, has_aux=True)(state.params, nets, config, batch, k)
    state, norms = train_state.apply_gradients(state, grads, tx,
                                               update_norm=config.log_update_norm)
    return state, {**metrics, **norms}

  def train_batch(step):
    """Images and token counts for `step`, made on the device from (seed, step)."""
    k_img, k_count = jax.random.split(jax.random.fold_in(data_key, step))
    if pool is None:
      images = D.scenes(k_img, config.batch_size, **scene_kwargs(config))['image']
    else:
      images = D.random_batch(k_img, pool, config.batch_size)
    return {'image': images,
            'count': sample_counts(k_count, config.batch_size, config, step)}

  evaluator = make_evaluator(config, nets)
  return loop.Task(init=init_state, train_step=train_step, train_batch=jax.jit(train_batch),
                   evaluate=lambda state: evaluator.metrics(state.params))
