"""unsup_video training: config validation, the model from a config, the pure train step, eval metrics."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from common import config as cfg
from common import loop
from common import train_state
from unsup_video import data as mm
from unsup_video import losses
from unsup_video import models

TEST_SOURCES = ('generated', 'npy', 'tfds')
STANDARD_TEST = dict(canvas=64, num_frames=20)   # the released test set's shape
DATA_STREAM = 1                                  # fold_in tag of the training key stream


def validate(config, num_devices=None):
  """Every check that can fail, before anything is compiled or written; raises ConfigError."""
  loop.check_fields(config, num_devices or jax.device_count())
  d, m = config.data, config.model
  cfg.check_choice(config, 'data.digits', mm.SOURCES)
  cfg.check_choice(config, 'data.range', losses.RANGES)
  cfg.check_choice(config, 'model.kind', models.KINDS)
  cfg.check_choice(config, 'model.mode', models.MODES)
  cfg.check_choice(config, 'model.conditional', (True, False))
  cfg.check_choice(config, 'model.output_activation', models.ACTIVATIONS)
  cfg.check_choice(config, 'model.dtype', models.DTYPES)
  cfg.check_choice(config, 'loss.kind', losses.LOSSES)
  cfg.check_choice(config, 'optim.name', train_state.OPTIMIZERS)
  cfg.check_choice(config, 'eval.test_source', TEST_SOURCES)
  for f in ('data.num_digits', 'data.canvas', 'data.num_frames',
            'data.num_input', 'model.layers', 'model.hidden', 'optim.lr', 'optim.eps',
            'eval.num_test', 'eval.batch_size', 'eval.examples'):
    cfg.check_positive(config, f)
  for f in ('data.speed', 'model.init_scale', 'optim.grad_clip', 'optim.momentum',
            'optim.weight_decay', 'loss.recon_weight', 'loss.future_weight'):
    cfg.check_positive(config, f, allow_zero=True)
  cfg.check_range(config, 'optim.decay', 0.0, 1.0)
  cfg.check(d.canvas >= mm.DIGIT, 'data.canvas', d.canvas, f'must be >= {mm.DIGIT} (the digit size)')
  cfg.check(d.num_input < d.num_frames, 'data.num_input', d.num_input,
            f'must be < data.num_frames ({d.num_frames}): the rest are the future')
  if m.kind == 'conv':
    cfg.check(all(c > 0 for c in m.conv_channels), 'model.conv_channels', m.conv_channels,
              'must be positive')
    k = 2 ** len(m.conv_channels)
    cfg.check(d.canvas % k == 0, 'data.canvas', d.canvas,
              f'must be divisible by {k} (one stride-2 conv per model.conv_channels entry)')
  if config.loss.kind == 'bce':
    cfg.check(m.output_activation == 'sigmoid' and d.range == 'unit', 'loss.kind', 'bce',
              "needs model.output_activation='sigmoid' and data.range='unit' (Bernoulli "
              f"targets in (0, 1)); got {m.output_activation!r} and {d.range!r}: use loss.kind='mse'")
  if d.range == 'signed':
    cfg.check(m.output_activation != 'sigmoid', 'model.output_activation', 'sigmoid',
              "sigmoid outputs lie in (0, 1) and cannot fit data.range='signed' (-1, 1): use "
              "'tanh' or 'linear'")
  else:
    cfg.check(m.output_activation != 'tanh', 'model.output_activation', 'tanh',
              "tanh outputs lie in (-1, 1) but data.range='unit' is (0, 1): use 'sigmoid', "
              "'linear', or data.range='signed'")
  weights = {'recon': config.loss.recon_weight, 'future': config.loss.future_weight}
  for branch in models.VideoLSTM(mode=m.mode).branches:
    cfg.check(weights[branch] > 0, f'loss.{branch}_weight', weights[branch],
              f'must be > 0 with model.mode={m.mode!r}')
  if config.eval.test_source != 'generated':
    for f, v in STANDARD_TEST.items():
      cfg.check(d[f] == v, f'data.{f}', d[f],
                f'must be {v} to score the standard test set (eval.test_source='
                f'{config.eval.test_source!r})')
    if config.eval.test_source == 'npy':
      cfg.check(bool(config.eval.test_path), 'eval.test_path', config.eval.test_path,
                'set it to mnist_test_seq.npy (eval.test_source=npy)')


def make_model(config):
  m = config.model
  return models.VideoLSTM(
      kind=m.kind, mode=m.mode, conditional=m.conditional, layers=m.layers, hidden=m.hidden,
      frame_size=config.data.canvas, conv_channels=tuple(m.conv_channels),
      init_scale=m.init_scale, forget_bias=m.forget_bias, conv_impl=config.conv_impl,
      dtype=jnp.bfloat16 if m.dtype == 'bfloat16' else None)


def make_optimizer(config):
  o = config.optim
  return train_state.make_optimizer(o.lr, o.grad_clip, o.weight_decay, name=o.name,
                                    momentum=o.momentum, decay=o.decay, eps=o.eps)


def make_init(config):
  """(model, optimizer, init_state(key) -> TrainState); needs no data."""
  model, tx = make_model(config), make_optimizer(config)
  example = jnp.zeros((1, config.data.canvas, config.data.canvas), jnp.float32)
  return model, tx, lambda key: train_state.create(model.init(key, example), tx)


def loss_fn(params, model, config, frames):
  """The weighted training loss (per frame, summed over pixels) on frames (B, T, H, W) in (0, 1)."""
  act, rng = config.model.output_activation, config.data.range
  x = losses.to_range(frames, rng)
  n_in = config.data.num_input
  logits = models.forward(model, params, x, n_in, act, teacher=True)
  tgt, tgt01 = models.targets(x, n_in), models.targets(frames, n_in)
  weights = {'recon': config.loss.recon_weight, 'future': config.loss.future_weight}
  total, terms = 0.0, {}
  for branch, lg in logits.items():
    loss = losses.frame_loss(config.loss.kind, lg, tgt[branch], act).mean()
    total = total + weights[branch] * loss
    terms[f'{branch}_loss'] = loss
    terms[f'{branch}_cross_entropy'] = losses.cross_entropy(lg, tgt01[branch], act, rng).mean()
  return total, {'loss': total, **terms}


def load_digits(config, split):
  try:
    return mm.load_digits(config.data.digits, config.data.data_dir or None,
                          'train' if split == 'train' else 'test')
  except ValueError as e:
    raise cfg.ConfigError(str(e)) from None


def generator_kwargs(config):
  d = config.data
  return dict(num_frames=d.num_frames, canvas=d.canvas, num_digits=d.num_digits, speed=d.speed)


def make_task(config):
  """The loop.Task of pure functions for this config (digits are loaded here, once)."""
  model, tx, init_state = make_init(config)
  digits = jnp.asarray(load_digits(config, 'train'))
  data_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), DATA_STREAM)

  def train_step(state, batch, key):
    del key   # the step is deterministic: all randomness is in the generated batch
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, model, config,
                                                     batch['frames'])
    state, norms = train_state.apply_gradients(state, grads, tx,
                                               update_norm=config.log_update_norm)
    return state, {**metrics, **norms}

  def train_batch(step):
    """Fresh sequences every step, generated on the device from (seed, step)."""
    return {'frames': mm.moving_mnist(jax.random.fold_in(data_key, step), digits,
                                      config.batch_size, **generator_kwargs(config))}

  evaluator = Evaluator(config, model)
  return loop.Task(init=init_state, train_step=train_step, train_batch=train_batch,
                   evaluate=lambda state: evaluator.metrics(state.params))


def load_test_set(config):
  """(frames (N, T, H, W) float32 in (0, 1), a one-line description)."""
  e = config.eval
  if e.test_source == 'npy':
    return mm.load_test_npy(e.test_path, e.num_test), f'{e.test_path}'
  if e.test_source == 'tfds':
    return mm.load_test_tfds(e.test_path or None, e.num_test), 'TFDS moving_mnist test'
  frames = mm.fixed_test_set(load_digits(config, 'test'), e.num_test, config.seed,
                             **generator_kwargs(config))
  return frames, f'generated test set (seed {config.seed}, held-out digits)'


class Evaluator:
  """Test metrics with conditional branches fed their own outputs, as at test time in the paper.

  For conditional models the cross-entropy with the true previous frames fed in (teacher
  forcing, as in training) is reported too: early in training a conditional model mostly
  copies its input frame, which scores well when forced and compounds when free-running.
  """

  def __init__(self, config, model, data=None):
    self.config, self.model = config, model
    if data is not None:
      self.__dict__['test_set'] = (np.asarray(data, np.float32), 'given')   # the cache
    act, rng = config.model.output_activation, config.data.range
    n_in = config.data.num_input

    def per_frame(params, frames):
      x = losses.to_range(frames, rng)
      logits = models.forward(model, params, x, n_in, act, teacher=False)
      tgt = models.targets(frames, n_in)
      out = {b: losses.frame_metrics(lg, tgt[b], act, rng) for b, lg in logits.items()}
      if model.conditional:   # the gap to teacher forcing measures compounding errors
        forced = models.forward(model, params, x, n_in, act, teacher=True)
        for b, lg in forced.items():
          out[b]['cross_entropy_teacher_forced'] = losses.cross_entropy(lg, tgt[b], act, rng)
      return out

    def predict(params, frames):
      logits = models.forward(model, params, losses.to_range(frames, rng), n_in, act,
                              teacher=False)
      return {b: jnp.clip(losses.unit_prediction(lg, act, rng), 0, 1) for b, lg in logits.items()}

    self._per_frame = jax.jit(per_frame)
    self.predict = jax.jit(predict)

  @functools.cached_property
  def test_set(self):
    """(frames, description), made or read on first use: training starts without waiting."""
    frames, source = load_test_set(self.config)
    return np.asarray(frames, np.float32), source

  @property
  def frames(self):
    return self.test_set[0]

  @property
  def source(self):
    return self.test_set[1]

  def per_frame(self, params):
    """{branch: {metric: (N, T_branch)}} over the whole test set, as numpy."""
    bs, frames = self.config.eval.batch_size, self.frames
    parts = [jax.device_get(self._per_frame(params, frames[i:i + bs]))
             for i in range(0, len(frames), bs)]
    return jax.tree.map(lambda *a: np.concatenate(a), *parts)

  def metrics(self, params, per_frame=None):
    """Scalars '<branch>_<metric>': means per frame over the test set."""
    per_frame = per_frame or self.per_frame(params)
    return {f'{b}_{k}': float(v.mean()) for b, ms in per_frame.items() for k, v in ms.items()}
