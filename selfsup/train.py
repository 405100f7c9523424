"""selfsup training: config validation, datasets, the model and train state, the pure train step
of every task, and the encoder-only restore for fine-tuning. The objective is in losses.py, the
evaluation in evaluation.py."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from common import config as cfg
from common import loop
from common import train_state
from selfsup import data as D
from selfsup import evaluation
from selfsup import losses
from selfsup import models
from selfsup import pretext

TASKS = pretext.TASKS + ('classify',)
DATA_STREAM = 1   # fold_in tag of the training data's key stream (evaluation's is 2)
ENCODER_FIELDS = ('widths', 'blocks', 'stem_stride', 'norm')


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
  kind = losses.loss_kind(config)
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
  # AdamW's chain even at weight decay 0: its opt_state is what selfsup's checkpoints hold.
  tx = train_state.make_optimizer(lr, o.grad_clip, o.weight_decay, adamw=True)
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
    return train_state.create(params, tx, batch_stats=stats)

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
# The train step.

def make_train_step(model, tx, config):
  def loss_fn(params, batch_stats, batch):
    out, stats = models.apply_model(model, params, batch_stats, batch, train=True)
    loss, metrics = losses.task_loss(out, batch, config)
    return loss, (metrics, stats)

  def train_step(state, batch, key):
    del key   # the step is deterministic: all randomness is in the batch
    grads, (metrics, stats) = jax.grad(loss_fn, has_aux=True)(state.params, state.batch_stats,
                                                              batch)
    new, norms = train_state.apply_gradients(state, grads, tx, config.log_update_norm)
    return new.replace(batch_stats=stats), {**metrics, **norms}

  return train_step, loss_fn


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
  draw = pretext.make_batch_fn(config, pool, labels, train=not config.overfit_one_batch)

  @jax.jit
  def train_batch(step):
    step = 0 if config.overfit_one_batch else step
    return draw(jax.random.fold_in(data_key, step))

  evaluator = evaluation.Evaluator(config, model, data)
  return loop.Task(init=init_state, train_step=train_step, train_batch=train_batch,
                   evaluate=evaluator.metrics)
