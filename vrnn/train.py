"""VRNN training: config validation, the model from a config, the pure train step and the eval metrics."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from common import config as cfg
from common import data as data_lib
from common import distributed
from common import loop
from common import train_state
from vrnn import arrays as vrnn_arrays
from vrnn import data as vrnn_data
from vrnn import losses
from vrnn import models

SOURCES = vrnn_data.SOURCES
STATS_FILE = 'normalisation.json'   # in the workdir: the train split's statistics, (mean, std)


def validate(config, num_devices=None):
  """Every check that can fail, before anything is compiled or written; raises ConfigError."""
  loop.check_fields(config, num_devices or jax.device_count())
  cfg.check_choice(config, 'data.source', SOURCES)
  cfg.check_choice(config, 'model.cell', models.CELLS)
  cfg.check_choice(config, 'model.prior', models.PRIORS)
  cfg.check_choice(config, 'model.output', models.OUTPUTS)
  cfg.check_choice(config, 'model.latent', (True, False))
  cfg.check_choice(config, 'model.pen_bit', (True, False))
  cfg.check_choice(config, 'data.normalise', (True, False))
  cfg.check_choice(config, 'eval.data_units', (True, False))
  for f in ('data.num_train', 'data.num_eval', 'data.max_len',
            'model.h_dim', 'model.phi_x_dim', 'model.phi_z_dim', 'model.hidden_dim',
            'model.z_dim', 'model.num_mixtures', 'model.min_scale', 'optim.lr',
            'eval.batch_size', 'eval.is_samples', 'eval.num_generate', 'eval.temperature',
            'eval.examples'):
    cfg.check_positive(config, f)
  for f in ('model.layers', 'optim.grad_clip', 'optim.weight_decay', 'loss.kl_warmup',
            'loss.free_bits', 'eval.generate_len'):
    cfg.check_positive(config, f, allow_zero=True)
  stroke_data = config.data.source in ('synthetic', 'iam')
  if config.model.output == 'bernoulli':
    cfg.check(not config.model.pen_bit, 'model.pen_bit', config.model.pen_bit,
              "must be False with model.output='bernoulli' (every feature is already a bit)")
  else:
    cfg.check(config.data.source != 'mnist_rows', 'model.output', config.model.output,
              "mnist_rows holds bits: use model.output='bernoulli'")
  if stroke_data:
    cfg.check(config.model.pen_bit, 'model.pen_bit', config.model.pen_bit,
              f'must be True for stroke data (data.source={config.data.source!r})')
  if config.data.source == 'npz':
    cfg.check(not config.model.pen_bit, 'model.pen_bit', config.model.pen_bit,
              'must be False for data.source=npz (every feature is continuous)')
    cfg.check(bool(config.data.path), 'data.path', config.data.path,
              'set it to a .npz or .npy file of (N, T, D) sequences (data.source=npz)')
    if config.model.output == 'bernoulli':
      cfg.check(not config.data.normalise, 'data.normalise', config.data.normalise,
                "must be False with model.output='bernoulli' (the features are bits)")
  if config.data.source == 'iam':
    cfg.check(bool(config.data.path), 'data.path', config.data.path,
              'set it to the IAM-OnDB folder holding lineStrokes/ (data.source=iam)')
  if config.data.source == 'synthetic':
    cfg.check(config.data.num_train >= config.batch_size, 'data.num_train',
              config.data.num_train, f'must be >= batch_size ({config.batch_size})')


def x_dim(config):
  if config.data.source == 'npz':
    try:
      return vrnn_arrays.num_features(config.data.path)
    except ValueError as e:
      raise cfg.ConfigError(str(e)) from None
  return 28 if config.data.source == 'mnist_rows' else 3


def make_model(config):
  m = config.model
  return models.VRNN(
      x_dim=x_dim(config), z_dim=m.z_dim, h_dim=m.h_dim, phi_x_dim=m.phi_x_dim,
      phi_z_dim=m.phi_z_dim, hidden_dim=m.hidden_dim, layers=m.layers, cell=m.cell,
      prior=m.prior, latent=m.latent, output=m.output, num_mixtures=m.num_mixtures,
      pen_bit=m.pen_bit, min_scale=m.min_scale)


def make_init(config):
  """(model, optimizer, init_state(key) -> TrainState); needs no data."""
  model = make_model(config)
  tx = train_state.make_optimizer(config.optim.lr, config.optim.grad_clip,
                                  config.optim.weight_decay)
  example = jnp.zeros((1, x_dim(config)), jnp.float32)
  return model, tx, lambda key: train_state.create(model.init(key, example), tx)


def load_data(config, split, stats=None):
  """{'x': (N, T, D), 'mask': (N, T), 'mean', 'std'} as numpy, normalised by the train stats
  (or by `stats`, a workdir's stored (mean, std))."""
  try:
    data = vrnn_data.load(config.data, split, config.data.seed, stats)
  except cfg.ConfigError:
    raise
  except ValueError as e:   # the data module's checks, e.g. data.num_eval out of range
    raise cfg.ConfigError(str(e)) from None
  if len(data['x']) < (config.batch_size if split == 'train' else 1):
    raise cfg.ConfigError(f'config.data: the {split} split has only {len(data["x"])} sequences, '
                          f'fewer than batch_size={config.batch_size}')
  return {k: np.asarray(v, np.float32) for k, v in data.items()}


def read_stats(workdir):
  """The (mean, std) a run was trained with, or None for a workdir without them."""
  path = os.path.join(workdir, STATS_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    stats = json.load(f)
  return np.asarray(stats['mean'], np.float32), np.asarray(stats['std'], np.float32)


def workdir_evaluator(config, model, workdir):
  """The Evaluator of a run's held-out data, normalised as the run was trained."""
  return Evaluator(config, model, load_data(config, 'eval', read_stats(workdir)))


def write_stats(workdir, data):
  """Stores the train split's normalisation on a run's first start; kept on resume."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, STATS_FILE)
  if not os.path.exists(path):
    with open(path, 'w') as f:
      json.dump({'mean': data['mean'].tolist(), 'std': data['std'].tolist()}, f)


def kl_weight(step, warmup):
  """1, or a linear ramp from 0 to 1 over `warmup` steps."""
  if not warmup:
    return jnp.float32(1.0)
  return jnp.minimum(1.0, step.astype(jnp.float32) / warmup)


def make_task(config, workdir=None):
  """The loop.Task of pure functions for this config (data is loaded here, once). With a
  workdir, the run's normalisation is stored there (or read back when resuming)."""
  model, tx, init_state = make_init(config)
  stats = read_stats(workdir) if workdir else None
  train = load_data(config, 'train', stats)
  if workdir and distributed.is_chief():   # every host computes the same stats; one writes
    write_stats(workdir, train)

  def train_step(state, batch, key):
    key = jax.random.fold_in(key, state.step)   # a fresh key per step, never reused
    w = kl_weight(state.step, config.loss.kl_warmup)
    grads, metrics = jax.grad(losses.loss_fn, has_aux=True)(
        state.params, model, batch['x'], batch['mask'], key, w, config.loss.free_bits)
    state, norms = train_state.apply_gradients(state, grads, tx)
    return state, {**metrics, **norms, 'kl_weight': w}

  def train_batch(step):
    idx = data_lib.epoch_batch_indices(step, len(train['x']), config.batch_size, config.seed)
    return {'x': train['x'][idx], 'mask': train['mask'][idx]}

  evaluator = Evaluator(config, model, load_data(config, 'eval', stats))
  return loop.Task(init=init_state, train_step=train_step, train_batch=train_batch,
                   evaluate=lambda state: evaluator.metrics(state.params))


ACTIVE_THRESHOLD = 0.01   # Burda et al. (2016): a unit is active if its activity exceeds this


def latent_activity(shift, mask):
  """Per latent dimension (z_dim,): the variance over held-out sequences and real steps of the
  encoder's shift from the prior, (mu_q - mu_p) / sigma_p.

  Burda et al.'s covariance criterion Var_x[E_q(z|x) z] assumes a fixed N(0, I) prior (where the
  shift is mu_q itself, as in VRNN-I). With a learned prior p(z_t | h_{t-1}) a dimension that the
  encoder ignores follows the prior, whose mean moves with h, so its mu_q varies although it
  carries nothing; the shift from the prior is what the encoder adds about x_t.
  """
  real = mask > 0
  return np.asarray(shift, np.float64)[real].var(axis=0)


class Evaluator:
  """The bound and the importance-sampled log-likelihood on the held-out set, in nats.

  Sequences are scored in normalised units (the density of the normalised offsets), the
  convention of the VRNN paper's handwriting numbers; with eval.data_units in the data's own
  units (the log-Jacobian of the normalisation added to log p(x), the bound and the estimate).
  """

  def __init__(self, config, model, data=None):
    self.config, self.model = config, model
    self.data = data if data is not None else load_data(config, 'eval')
    self._terms = jax.jit(lambda p, x, m, k: losses.step_terms(model, p, x, m, k))
    self._is = jax.jit(lambda p, x, m, k, n: losses.importance_log_likelihood(
        model, p, x, m, k, n), static_argnums=4)

  def batches(self):
    bs = self.config.eval.batch_size
    x, mask = self.data['x'], self.data['mask']
    for i in range(0, len(x), bs):
      yield i, x[i:i + bs], mask[i:i + bs]

  def step_terms(self, params):
    """Per-step log p(x_t | .) and KL for every eval sequence: dict of (N, T) arrays."""
    key = jax.random.PRNGKey(0)   # fixed: the same eval every time
    parts = [jax.device_get(self._terms(params, x, m, jax.random.fold_in(key, i)))
             for i, x, m in self.batches()]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def jacobian(self):
    """Per sequence (N,): what turns a normalised log-density into the data's units (or 0)."""
    if not self.config.eval.data_units:
      return np.zeros(len(self.data['mask']))
    return vrnn_data.log_jacobian(self.data['mask'], self.data['std'])

  def metrics(self, params, with_likelihood=False, terms=None):
    """terms: this params' step_terms when the caller already has them."""
    t = self.step_terms(params) if terms is None else terms
    mask, jac = self.data['mask'], self.jacobian()
    log_px = t['log_px'].sum(1) + jac
    elbo = log_px - t['kl'].sum(1)
    steps = mask.sum()
    out = {
        'elbo': float(elbo.mean()),
        'elbo_per_step': float(elbo.sum() / steps),
        'log_px': float(log_px.mean()),
        'kl': float(t['kl'].sum(1).mean()),
    }
    if self.model.latent:
      out['active_units'] = int(np.sum(latent_activity(t['shift'], mask) > ACTIVE_THRESHOLD))
    if with_likelihood:
      ll = self.log_likelihood(params)
      out['log_likelihood'] = float(ll.mean())
      out['log_likelihood_per_step'] = float(ll.sum() / steps)
    return out

  def log_likelihood(self, params, num_samples=None):
    """Importance-sampled log p(x) per eval sequence (N,), from eval.is_samples samples or
    `num_samples`; in the units `metrics` reports."""
    key = jax.random.PRNGKey(1)
    n = int(num_samples or self.config.eval.is_samples)
    ll = np.concatenate([jax.device_get(self._is(params, x, m, jax.random.fold_in(key, i), n))
                         for i, x, m in self.batches()])
    return ll + self.jacobian()
