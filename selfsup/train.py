"""selfsup training: config validation, datasets, the model and train state, the pure train step
of every task, the encoder-only restore for fine-tuning, and kNN / linear-probe evaluation."""
import functools
import os
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from common import config as cfg
from common import loop
from common import norms
from configs import selfsup as configs
from selfsup import data as D
from selfsup import losses
from selfsup import models
from selfsup import pretext

TASKS = configs.PRETEXT + ('classify',)
DATA_STREAM, EVAL_STREAM = 1, 2   # fold_in tags of the key streams
ENCODER_FIELDS = ('widths', 'blocks', 'stem_stride', 'norm')


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any      # BatchNorm running statistics ({} when the model has none)
  opt_state: Any


def loss_kind(config):
  if config.loss.kind != 'auto':
    return config.loss.kind
  return 'mse' if config.pretext.target == 'weights' else 'bce'


def validate(config, num_devices=None, check_source=True):
  """Every check that can fail, before anything is compiled or written; raises ConfigError.

  check_source: that finetune.init_from holds a run with this encoder (not needed to evaluate).
  """
  loop.check_fields(config, num_devices or jax.device_count())
  d, p, m, h = config.data, config.pretext, config.model, config.head
  cfg.check_choice(config, 'task', TASKS)
  cfg.check_choice(config, 'data.source', D.SOURCES)
  cfg.check_choice(config, 'model.norm', models.NORMS)
  cfg.check_choice(config, 'head.kind', models.HEADS)
  cfg.check_choice(config, 'pretext.target', ('which', 'weights'))
  cfg.check_choice(config, 'loss.kind', ('auto', 'bce', 'mse', 'margin'))
  cfg.check_choice(config, 'finetune.mode', ('full', 'linear'))
  for f in ('data.size', 'data.num_labelled', 'data.num_val',
            'data.num_unlabelled', 'pretext.num_candidates', 'pretext.num_mixed',
            'pretext.patch_size', 'pretext.temperature', 'model.stem_stride', 'optim.lr',
            'eval.batch_size', 'eval.knn_k', 'eval.knn_temperature', 'eval.probe_steps',
            'eval.probe_lr', 'loss.margin'):
    cfg.check_positive(config, f)
  for f in ('optim.warmup_steps', 'optim.grad_clip', 'optim.weight_decay', 'eval.probe_l2',
            'eval.mistakes', 'augment.color_jitter', 'head.temperature', 'data.num_images',
            'finetune.init_step'):
    cfg.check_positive(config, f, allow_zero=True)
  cfg.check_range(config, 'pretext.positive_fraction', 0.0, 1.0)
  cfg.check_range(config, 'augment.grayscale', 0.0, 1.0)
  cfg.check_range(config, 'augment.color_jitter', 0.0, 1.0)
  cfg.check(p.num_mixed <= p.num_candidates, 'pretext.num_mixed', p.num_mixed,
            f'must be <= pretext.num_candidates ({p.num_candidates})')
  cfg.check(len(p.beta) == 2 and min(p.beta) > 0, 'pretext.beta', tuple(p.beta),
            'must be (a, b) with a, b > 0')
  lo, hi = p.scale_range
  cfg.check(0 < lo <= hi, 'pretext.scale_range', tuple(p.scale_range), 'must be 0 < low <= high')
  lo, hi = config.augment.crop_scale
  cfg.check(0 < lo <= hi <= 1, 'augment.crop_scale', tuple(config.augment.crop_scale),
            'must be 0 < low <= high <= 1')
  cfg.check(p.patch_size < d.size, 'pretext.patch_size', p.patch_size,
            f'must be smaller than data.size ({d.size})')
  kind = loss_kind(config)
  if config.task in ('mixup', 'scale'):
    allowed = ('mse',) if p.target == 'weights' else ('bce', 'margin')
    cfg.check(kind in allowed, 'loss.kind', config.loss.kind,
              f'with pretext.target={p.target!r} allowed values are '
              f'{", ".join(map(repr, allowed + ("auto",)))}')
  cfg.check(len(m.widths) > 0 and len(m.widths) == len(m.blocks) and min(m.widths) > 0
            and min(m.blocks) > 0, 'model.blocks', tuple(m.blocks),
            f'needs one positive block count per stage of model.widths={tuple(m.widths)}')
  cfg.check(len(m.projection) > 0 and min(m.projection) > 0, 'model.projection',
            tuple(m.projection), 'must be positive layer widths (hidden..., output)')
  cfg.check(all(x > 0 for x in h.hidden), 'head.hidden', tuple(h.hidden),
            'must be positive layer widths')
  down = m.stem_stride * 2 ** (len(m.widths) - 1)
  cfg.check(d.size % down == 0, 'data.size', d.size,
            f'must be divisible by {down} (the stem stride and one stride 2 per extra stage)')
  cfg.check(d.size % 2 == 0, 'data.size', d.size, 'must be even (quadrants)')
  if d.source == 'synthetic':
    cfg.check(d.num_labelled >= 2 * D.NUM_CLASSES, 'data.num_labelled', d.num_labelled,
              f'must be >= {2 * D.NUM_CLASSES} (two per class)')
  if config.finetune.init_from:
    cfg.check(config.task == 'classify', 'finetune.init_from', config.finetune.init_from,
              "restores an encoder for task 'classify' (variant finetune) only")
    if check_source:
      check_source_encoder(config)
  cfg.check(config.task == 'classify' or config.finetune.mode == 'full', 'finetune.mode',
            config.finetune.mode, "'linear' applies to task 'classify' only")


def check_source_encoder(config):
  """The pretext run in finetune.init_from exists and has this config's encoder."""
  src = config.finetune.init_from
  if not os.path.exists(os.path.join(src, 'config.json')):
    raise cfg.ConfigError(f'config.finetune.init_from={src!r} is invalid: no training run there '
                          '(no config.json)')
  theirs = cfg.load(src).model
  for f in ENCODER_FIELDS:
    ours = config.model[f]
    if tuple(np.atleast_1d(ours)) != tuple(np.atleast_1d(theirs[f])):
      raise cfg.ConfigError(
          f'config.model.{f}={ours!r} is invalid: the run in finetune.init_from has '
          f'model.{f}={theirs[f]!r}; the encoder must match to be restored')


# ---------------------------------------------------------------------------
# Data.

def datasets(config):
  """{'train': (uint8 images, labels), 'val': (...), 'unlabelled': uint8 images,
  'num_classes': int, 'source': a description}."""
  d = config.data
  if d.source == 'synthetic':
    out = D.embedded(d.seed, d.size, d.num_labelled, d.num_val, d.num_unlabelled)
    out['num_classes'] = D.NUM_CLASSES
    out['source'] = (f'synthetic shapes (seed {d.seed}: {d.num_labelled} labelled, {d.num_val} '
                     f'validation, {d.num_unlabelled} unlabelled, {d.size} px)')
    return out
  num = d.num_images or None
  tx, ty, k = D.load_imagewang(d.tfds_name, 'train', d.size, num, d.data_dir or None)
  vx, vy, _ = D.load_imagewang(d.tfds_name, 'validation', d.size, num, d.data_dir or None)
  pool = [tx]
  if d.unsup_folder:
    pool.append(D.load_unlabelled(d.unsup_folder, d.size, num))
  return {'train': (tx, ty), 'val': (vx, vy), 'unlabelled': np.concatenate(pool),
          'num_classes': int(k),
          'source': f'TFDS {d.tfds_name} ({len(tx)} train, {len(vx)} validation, '
                    f'{sum(map(len, pool))} unlabelled{" with " + d.unsup_folder if d.unsup_folder else ""})'}


# ---------------------------------------------------------------------------
# Model, optimizer and state.

def make_model(config, num_classes):
  m, h = config.model, config.head
  encoder = models.Encoder(widths=tuple(m.widths), blocks=tuple(m.blocks),
                           stem_stride=m.stem_stride, norm=m.norm, conv_impl=config.conv_impl)
  classify = config.task == 'classify'
  return models.Model(
      task=config.task, encoder=encoder, projection=tuple(m.projection), head_kind=h.kind,
      head_hidden=tuple(config.finetune.hidden if classify else h.hidden),
      head_batch_norm=h.batch_norm, head_temperature=h.temperature, num_classes=num_classes,
      frozen_encoder=classify and config.finetune.mode == 'linear')


def example_batch(config, n=2):
  """A zero batch of the task's shapes (for init)."""
  s = config.data.size
  img = jnp.zeros((n, s, s, 3))
  if config.task == 'simclr':
    return {'view1': img, 'view2': img}
  if config.task in ('mixup', 'scale'):
    return {'query': img, 'candidates': jnp.zeros((n, config.pretext.num_candidates, s, s, 3))}
  return {'image': img} if config.task == 'classify' else {'query': img}


def make_optimizer(config):
  o = config.optim
  lr = optax.linear_schedule(0.0, o.lr, o.warmup_steps) if o.warmup_steps else o.lr
  parts = [optax.clip_by_global_norm(o.grad_clip)] if o.grad_clip else []
  parts.append(optax.adamw(lr, weight_decay=o.weight_decay))
  tx = optax.chain(*parts)
  if config.task == 'classify' and config.finetune.mode == 'linear':
    # A frozen encoder gets no update at all (not even weight decay).
    labels = lambda params: {k: 'frozen' if k == 'encoder' else 'train' for k in params}
    tx = optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, labels)
  return tx


def make_init(config, num_classes, encoder=None):
  """(model, optimizer, init_state(key) -> TrainState). `encoder` ({'params', 'batch_stats'}),
  when given, replaces the initial encoder (fine-tuning from a pretext run)."""
  model = make_model(config, num_classes)
  tx = make_optimizer(config)

  def init_state(key):
    variables = model.init(key, example_batch(config), train=False)
    params, stats = variables['params'], dict(variables.get('batch_stats', {}))
    if encoder is not None:
      params = {**params, 'encoder': encoder['params']}
      if 'encoder' in stats:
        stats['encoder'] = encoder['batch_stats']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                      opt_state=tx.init(params))

  return model, tx, init_state


def load_encoder(workdir, step=None):
  """The encoder subtree ({'params', 'batch_stats'}) of the run in `workdir` (newest checkpoint
  or `step`), restored with that run's own config. Returns (encoder, step)."""
  src = cfg.load(workdir)
  _, _, init_state = make_init(src, datasets_num_classes(src))
  state, step = loop.restore(workdir, init_state, src.seed, step or None)
  enc = {'params': jax.device_get(state.params['encoder']),
         'batch_stats': jax.device_get(state.batch_stats.get('encoder', {}))}
  return enc, step


def datasets_num_classes(config):
  if config.data.source == 'synthetic':
    return D.NUM_CLASSES
  # The head's width of a run on real data: read from the checkpoint-free TFDS metadata.
  return D.load_imagewang(config.data.tfds_name, 'train', config.data.size, 1,
                          config.data.data_dir or None)[2]


# ---------------------------------------------------------------------------
# Losses and the train step.

def task_loss(out, batch, config):
  """(loss, metrics) of a model output on a batch of config.task."""
  t = config.task
  if t in ('mixup', 'scale'):
    kind, scores = loss_kind(config), out['scores']
    if kind == 'bce':
      loss = losses.bce(scores, batch['which'])
    elif kind == 'margin':
      d = losses.pairwise_distance(out['query'][:, None], out['candidates'])
      loss, scores = losses.margin_contrastive(d, batch['which'], config.loss.margin), -d
    else:   # regression of the weights: mixup's sum to one, scale's lie in (0, 1]
      pred = jax.nn.softmax(scores) if t == 'mixup' else jax.nn.sigmoid(scores)
      loss = losses.mse(pred, batch['weights'])
    return loss, {'loss': loss, 'accuracy': losses.topk_set_accuracy(scores, batch['which'])}
  if t == 'simclr':
    loss = losses.nt_xent(out['z1'], out['z2'], config.pretext.temperature)
    return loss, {'loss': loss, 'accuracy': losses.nt_xent_accuracy(out['z1'], out['z2'])}
  if t == 'patchwork':
    y = batch['label'].astype(jnp.float32)
    loss = losses.bce(out['logits'], y)
    return loss, {'loss': loss, 'accuracy': ((out['logits'] > 0) == (y > 0.5)).mean()}
  loss = losses.softmax_ce(out['logits'], batch['label'])
  return loss, {'loss': loss, 'accuracy': losses.accuracy(out['logits'], batch['label'])}


def apply_model(model, params, batch_stats, batch, train):
  """(outputs, new batch_stats)."""
  variables = {'params': params, 'batch_stats': batch_stats}
  if train and batch_stats:
    out, updated = model.apply(variables, batch, train=True, mutable=['batch_stats'])
    return out, updated['batch_stats']
  return model.apply(variables, batch, train=train), batch_stats


def make_train_step(model, tx, config):
  def loss_fn(params, batch_stats, batch):
    out, stats = apply_model(model, params, batch_stats, batch, train=True)
    loss, metrics = task_loss(out, batch, config)
    return loss, (metrics, stats)

  def train_step(state, batch, key):
    del key   # the step is deterministic: all randomness is in the batch
    grads, (metrics, stats) = jax.grad(loss_fn, has_aux=True)(state.params, state.batch_stats,
                                                              batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = TrainState(step=state.step + 1, params=params, batch_stats=stats, opt_state=opt_state)
    return new, {**metrics, **norms.l2_norms(grads, params,
                                             updates if config.log_update_norm else None)}

  return train_step, loss_fn


def make_batch_fn(config, pool, labels=None, train=True):
  """(key) -> a batch of config.task drawn from a device pool of uint8 images (and labels)."""
  pool = jnp.asarray(pool)
  labels = None if labels is None else jnp.asarray(labels)
  make = pretext.batch_fn(config.task, config, train)
  m = pretext.candidates_per_example(config.task, config)
  b = config.batch_size

  def batch(key):
    k_idx, k_ex = jax.random.split(key)
    idx = jax.random.randint(k_idx, (b, m), 0, pool.shape[0])
    out = make(k_ex, D.to_float(pool[idx]))
    if labels is not None:
      out['label'] = labels[idx[:, 0]]
    return out

  return batch


def make_task(config, data=None):
  """The loop.Task of pure functions for this config (datasets are made or loaded here, once)."""
  data = data or datasets(config)
  encoder = None
  if config.finetune.init_from:
    encoder, step = load_encoder(config.finetune.init_from, config.finetune.init_step)
    print(f'encoder restored from {config.finetune.init_from} (step {step})')
  model, tx, init_state = make_init(config, data['num_classes'], encoder)
  train_step, _ = make_train_step(model, tx, config)
  data_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), DATA_STREAM)
  if config.task == 'classify':
    pool, labels = jnp.asarray(data['train'][0]), jnp.asarray(data['train'][1])
  else:
    pool, labels = jnp.asarray(data['unlabelled']), None
  draw = make_batch_fn(config, pool, labels, train=not config.overfit_one_batch)

  @jax.jit
  def train_batch(step):
    step = 0 if config.overfit_one_batch else step
    return draw(jax.random.fold_in(data_key, step))

  evaluator = Evaluator(config, model, data)
  return loop.Task(init=init_state, train_step=train_step, train_batch=train_batch,
                   evaluate=evaluator.metrics)


# ---------------------------------------------------------------------------
# Evaluation: kNN, linear probe, the task itself on validation images.

def knn_predict(train_features, train_labels, query_features, k, num_classes, temperature):
  """Class scores (Q, num_classes) of a weighted kNN on cosine similarity: each of the k nearest
  training examples votes for its class with weight exp(similarity / temperature)."""
  unit = lambda f: f / jnp.linalg.norm(f, axis=-1, keepdims=True).clip(1e-12)
  sim = unit(query_features) @ unit(train_features).T
  top, idx = jax.lax.top_k(sim, k)
  votes = jax.nn.one_hot(train_labels[idx], num_classes) * jnp.exp(top / temperature)[..., None]
  return votes.sum(1)


@functools.partial(jax.jit, static_argnames=('num_classes', 'steps'))
def linear_probe(train_features, train_labels, query_features, num_classes, steps, lr, l2):
  """Logits (Q, num_classes) of a softmax regression fitted on standardised frozen features by
  `steps` full-batch Adam steps with an l2 penalty."""
  mean, std = train_features.mean(0), train_features.std(0) + 1e-6
  x, q = (train_features - mean) / std, (query_features - mean) / std
  params = {'w': jnp.zeros((x.shape[1], num_classes)), 'b': jnp.zeros(num_classes)}
  opt = optax.adam(lr)

  def loss(p):
    return losses.softmax_ce(x @ p['w'] + p['b'], train_labels) + l2 * jnp.square(p['w']).sum()

  def step(carry, _):
    p, s = carry
    u, s = opt.update(jax.grad(loss)(p), s)
    return (optax.apply_updates(p, u), s), None

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
  return q @ params['w'] + params['b']


class Evaluator:
  """kNN and linear-probe accuracy of the encoder's features (labelled train -> validation),
  the task's own loss and accuracy on validation images (no augmentation), and for classify
  runs the classifier's validation accuracy."""

  def __init__(self, config, model, data):
    self.config, self.model, self.data = config, model, data
    e = config.eval
    val_x = jnp.asarray(data['val'][0])
    self._features = jax.jit(lambda params, stats, x: model.apply(
        {'params': params, 'batch_stats': stats}, D.to_float(x), method=models.Model.features))
    self._logits = jax.jit(lambda params, stats, x: model.apply(
        {'params': params, 'batch_stats': stats}, {'image': D.to_float(x)})['logits'])
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), EVAL_STREAM)
    if config.task != 'classify':
      # A fixed batch of the pretext task made from validation images, unaugmented.
      self.task_batch = jax.jit(make_batch_fn(config, val_x, train=False))(key)

      def task_metrics(params, stats, batch):   # the batch is an argument, not a constant
        out, _ = apply_model(model, params, stats, batch, train=False)
        return task_loss(out, batch, config)[1]

      self._task_metrics = jax.jit(task_metrics)
    self._knn = jax.jit(functools.partial(knn_predict, k=e.knn_k,
                                          num_classes=data['num_classes'],
                                          temperature=e.knn_temperature))

  def _batched(self, fn, params, stats, images):
    bs = self.config.eval.batch_size
    return np.concatenate([np.asarray(fn(params, stats, images[i:i + bs]))
                           for i in range(0, len(images), bs)])

  def features(self, state, split):
    return self._batched(self._features, state.params, state.batch_stats, self.data[split][0])

  def predictions(self, state):
    """{'knn', 'probe', and for classify 'classifier'}: validation class scores (N, classes)."""
    e, k = self.config.eval, self.data['num_classes']
    tr, va = self.features(state, 'train'), self.features(state, 'val')
    ty = jnp.asarray(self.data['train'][1])
    out = {'knn': np.asarray(self._knn(tr, ty, va)),
           'probe': np.asarray(linear_probe(tr, ty, va, k, e.probe_steps, e.probe_lr,
                                            e.probe_l2))}
    if self.config.task == 'classify':
      out['classifier'] = self._batched(self._logits, state.params, state.batch_stats,
                                        self.data['val'][0])
    return out

  def metrics(self, state, predictions=None):
    predictions = predictions or self.predictions(state)
    labels = np.asarray(self.data['val'][1])
    out = {f'{name}_accuracy': float((p.argmax(-1) == labels).mean())
           for name, p in predictions.items()}
    if self.config.task != 'classify':
      out.update({f'task_{k}': float(v)
                  for k, v in self._task_metrics(state.params, state.batch_stats,
                                                        self.task_batch).items()})
    return out
