"""The selfsup step benchmark runs end to end, and its PyTorch twin is the JAX model: the same
parameters, losses, gradients, BatchNorm statistics and optimizer."""
import functools
import math
import re

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from benchmarks import harness
from benchmarks import selfsup_step
from benchmarks import torch_selfsup as tss
from benchmarks import torch_selfsup_weights as tsw
from selfsup import losses as ss_losses
from selfsup import pretext as ss_pretext
from selfsup import train as ss_train
from tests import helpers

TINY = dict(batch=4, size=16, widths=(8, 16))
TINY_ARGS = ['--batch=4', '--size=16', '--widths=8,16', '--threads=1']
CASES = {   # name -> (variant, config overrides)
    'mixup': ('mixup', {}),
    # no BatchNorm over the batch after the encoder here: it nearly cancels the stem's
    # gradients, which torch's channels-last BatchNorm2d backward then gets 1e-2 wrong (NCHW
    # and JAX 1e-5; float64 agrees)
    'scale_batchnorm_cosine_margin': ('scale', {'model.norm': 'batch', 'head.kind': 'cosine',
                                                'head.batch_norm': False,
                                                'loss.kind': 'margin'}),
    'mixup_weights_dot': ('mixup', {'pretext.target': 'weights', 'head.kind': 'dot',
                                    'head.batch_norm': False}),
    'scale_weights': ('scale', {'pretext.target': 'weights'}),
    'quadrant': ('quadrant', {}),
    'patchwork': ('patchwork', {}),
    'simclr': ('simclr', {}),
    'finetune': ('finetune', {'finetune.hidden': (16,)}),
}
# one compile each; with test_task_losses_match_jax and test_heads_match_jax they cover every
# norm, head and loss
MATCHED = ['mixup', 'scale_batchnorm_cosine_margin', 'simclr', 'finetune']


def _config(case='mixup', **optim):
  variant, overrides = CASES[case]
  config = selfsup_step.make_config(variant, **TINY)
  config.model.projection = (16, 8)
  config.head.hidden = (16,)
  helpers.set_fields(config, overrides)
  config.optim.update(optim)
  ss_train.validate(config)
  return config


def _shapes(config):
  model = ss_train.make_model(config, 10)
  init = functools.partial(model.init, train=False)
  return model, jax.eval_shape(init, jax.random.PRNGKey(0), ss_train.example_batch(config))


def _random_variables(config, seed=0):
  """The JAX model and random variables of its shapes (nothing compiled): every norm scale
  nonzero (the zero-initialised ones would hide half the network from the gradients),
  running variances positive."""
  model, shapes = _shapes(config)
  rng = np.random.default_rng(seed)

  def fill(path, a):
    if jax.tree_util.keystr(path[-1:]) == "['var']":
      return rng.uniform(0.5, 2.0, a.shape).astype(np.float32)
    scale = np.sqrt(np.prod(a.shape[:-1])) if len(a.shape) > 1 else 2.0
    return rng.standard_normal(a.shape, dtype=np.float32) / scale

  return model, jax.tree_util.tree_map_with_path(fill, shapes)


def _batch(config, seed=0):
  """A random batch of the task with the structure of its generator's (traced, not compiled):
  images uniform, pretext targets and labels drawn as the generator does. The benchmark's own
  batches are tested in `test_main_prints_a_ratio`."""
  images, labels = selfsup_step.synthetic_images(config, seed)
  make = ss_pretext.make_batch_fn(config, images,
                                 labels if config.task == 'classify' else None, train=False)
  shapes = jax.eval_shape(make, jax.random.PRNGKey(seed))
  rng = np.random.default_rng(seed)
  b, n = config.batch_size, config.pretext.num_candidates
  out = {k: rng.random(a.shape, dtype=np.float32) for k, a in shapes.items()
         if k in ('query', 'candidates', 'image', 'view1', 'view2')}
  if config.task in ('mixup', 'scale'):
    k = config.pretext.num_mixed if config.task == 'mixup' else 1
    which = (np.argsort(rng.random((b, n)), -1) < k).astype(np.float32)
    weights = which * rng.uniform(0.3, 1.0, (b, n)).astype(np.float32)
    if config.task == 'mixup':
      weights /= weights.sum(-1, keepdims=True)
    out.update(which=which, weights=weights)
  if 'label' in shapes:
    classes = {'quadrant': 4, 'patchwork': 2}.get(config.task, 10)
    out['label'] = rng.integers(0, classes, (b,)).astype(shapes['label'].dtype)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), out) == jax.tree.map(
      lambda a: (a.shape, a.dtype), shapes)
  return out


def _twin(config, variables):
  twin = tss.from_config(config, 10)
  tsw.load_flax_params(twin, variables)
  return twin


def test_main_prints_a_ratio(capsys):
  out = selfsup_step.main(TINY_ARGS + ['--steps=1', '--rounds=1'])
  text = capsys.readouterr().out
  helpers.assert_ends_with_ratio(text)
  assert {'jax_s_per_step', 'torch_s_per_step', 'ratio'} <= set(out)
  assert 'DIFFERENT' not in text
  # the same weights and batch: JAX and torch start from the same loss
  first = [float(v) for v in re.findall(r'first loss (\S+)', text)]
  assert len(first) == 2, text
  np.testing.assert_allclose(first[1], first[0], rtol=1e-4)


@pytest.mark.parametrize('case', list(CASES))
def test_parameter_counts_are_equal(case):
  config = _config(case)
  _, shapes = _shapes(config)
  twin = tss.from_config(config, 10)
  assert tss.num_params(twin) == harness.count_params(shapes['params'])
  # and tensor by tensor: every parameter and running statistic is ported, to its shape
  pairs = tsw.named_pairs(twin, shapes['params'])
  stats = tsw.stat_pairs(twin, shapes.get('batch_stats', {}))
  assert len(pairs) == len(jax.tree.leaves(shapes['params'])) == len(list(twin.parameters()))
  assert len(stats) == len(jax.tree.leaves(shapes.get('batch_stats', {})))
  assert len({id(t) for t, _ in pairs + stats}) == len(pairs + stats)
  for t, a in pairs + stats:
    assert tsw.torch_layout(np.zeros(a.shape)).shape == tuple(t.shape), (t.shape, a.shape)


def test_parameter_count_at_the_default_sizes():
  config = selfsup_step.make_config()
  assert (config.task, config.batch_size, config.data.size) == ('mixup', 64, 32)
  _, shapes = _shapes(config)
  with torch.device('meta'):
    assert tss.num_params(tss.from_config(config, 10)) == harness.count_params(shapes['params'])


@pytest.mark.parametrize('case', MATCHED)
def test_loss_gradients_and_statistics_match_jax(case):
  """From the same random variables on the same pretext batch: the loss, its metrics, every
  gradient and the new BatchNorm running statistics in training mode, the outputs in eval
  mode (running statistics)."""
  config = _config(case)
  model, variables = _random_variables(config)
  params, stats = variables['params'], variables.get('batch_stats', {})
  batch = _batch(config)
  _, loss_fn = ss_train.make_train_step(model, ss_train.make_optimizer(config), config)

  @jax.jit
  def jax_side(params, stats, batch):
    (loss, (metrics, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, stats, batch)
    out = model.apply({'params': params, 'batch_stats': stats}, batch, train=False)
    return loss, metrics, new_stats, grads, out

  loss, metrics, new_stats, grads, jout = jax_side(params, stats, batch)
  twin = _twin(config, variables)
  tbatch = tss.to_torch_batch(batch)
  tloss, tmetrics = tss.loss_fn(twin, tbatch, config)
  np.testing.assert_allclose(tloss.item(), float(loss), rtol=1e-4)
  assert set(tmetrics) == {'loss', 'accuracy'}
  np.testing.assert_allclose(tmetrics['accuracy'].item(), float(metrics['accuracy']))
  tloss.backward()
  for t, g in tsw.named_pairs(twin, grads):
    g = tsw.torch_layout(g)   # some are zero (a bias before a difference): an absolute floor
    np.testing.assert_allclose(t.grad.numpy(), g, rtol=1e-3,
                               atol=1e-3 * np.abs(g).max() + 1e-6)
  # running statistics: the means agree; torch moves the variances towards the unbiased batch
  # variance, flax towards the biased one: by the same n / (n - 1) for every channel
  pairs = tsw.stat_pairs(twin, new_stats)
  assert pairs and len(pairs) == len(jax.tree.leaves(stats))
  for (t_mean, a_mean), (t_var, a_var), (_, old_var) in zip(
      pairs[::2], pairs[1::2], tsw.stat_pairs(twin, stats)[1::2]):
    np.testing.assert_allclose(t_mean.numpy(), a_mean, rtol=1e-4, atol=1e-5)
    t_step, a_step = t_var.numpy() - 0.9 * old_var, np.asarray(a_var) - 0.9 * old_var
    r = np.median(t_step / a_step)
    assert 1 < r <= 4 / 3 + 1e-3   # n >= 4 rows
    np.testing.assert_allclose(t_step, r * a_step, rtol=1e-3, atol=1e-5)
  # eval mode: the running statistics loaded from flax
  twin = _twin(config, variables).eval()
  with torch.no_grad():
    tout = twin(tbatch)
  assert set(tout) == set(jout)
  for k in tout:
    np.testing.assert_allclose(tout[k].numpy(), jout[k], rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.parametrize('case', ['mixup_weights_dot', 'scale_weights', 'quadrant',
                                  'patchwork'])
def test_task_losses_match_jax(case):
  """`task_loss` on the same random outputs: the losses and metrics the model tests above do
  not reach (the weights' MSE after softmax / sigmoid, patchwork's BCE, quadrant's 4 classes)."""
  config = _config(case)
  batch, rng = _batch(config), np.random.default_rng(1)
  b, n = config.batch_size, config.pretext.num_candidates
  out = ({'scores': rng.standard_normal((b, n), dtype=np.float32),
          'query': rng.standard_normal((b, 8), dtype=np.float32),
          'candidates': rng.standard_normal((b, n, 8), dtype=np.float32)}
         if config.task in ('mixup', 'scale') else
         {'logits': rng.standard_normal((b, 4) if config.task == 'quadrant' else (b,),
                                        dtype=np.float32)})
  loss, metrics = jax.jit(lambda o, x: ss_losses.task_loss(o, x, config))(out, batch)
  tloss, tmetrics = tss.task_loss(tss.to_torch_batch(out), tss.to_torch_batch(batch), config)
  for k in ('loss', 'accuracy'):
    np.testing.assert_allclose(tmetrics[k].item(), float(metrics[k]), rtol=1e-5, err_msg=k)
  assert tloss is tmetrics['loss']


@pytest.mark.parametrize('kind', ['dot', 'cosine'])
def test_heads_match_jax(kind):
  from selfsup import models
  rng = np.random.default_rng(0)
  q = rng.standard_normal((3, 8), dtype=np.float32)
  c = rng.standard_normal((3, 4, 8), dtype=np.float32)
  scores = models.SiameseHead(kind).apply({}, q, c, False)
  tscores = tss.SiameseHead(kind, dim=8)(torch.from_numpy(q), torch.from_numpy(c))
  np.testing.assert_allclose(tscores.numpy(), scores, rtol=1e-5, atol=1e-6)


def test_nchw_twin_matches_channels_last():
  config = _config('mixup')
  _, variables = _random_variables(config)
  batch = tss.to_torch_batch(_batch(config))
  losses = []
  for channels_last in (True, False):
    twin = tss.from_config(config, 10, channels_last=channels_last)
    tsw.load_flax_params(twin, variables)
    losses.append(tss.loss_fn(twin, batch, config)[0].item())
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_optimizer_matches_optax():
  """Three steps on the same gradients give the same parameters as the config's optax chain:
  the warm-up schedule (a zero rate on the first step), clipping (on the second, not on the
  third) and decoupled weight decay."""
  config = _config('mixup', lr=0.01, warmup_steps=2, grad_clip=1.0, weight_decay=0.1)
  rng = np.random.default_rng(0)
  params = {str(i): rng.standard_normal(s).astype(np.float32)
            for i, s in enumerate([(5, 3), (7,), (2, 4)])}
  grads = [{k: rng.standard_normal(v.shape).astype(np.float32) * scale
            for k, v in params.items()} for scale in (1.0, 1.0, 0.01)]
  tx = ss_train.make_optimizer(config)
  update = jax.jit(tx.update)
  jparams, opt_state = params, tx.init(params)
  tparams = {k: torch.from_numpy(v.copy()) for k, v in params.items()}
  o = config.optim
  opt = tss.Optimizer(list(tparams.values()), o.lr, o.warmup_steps, o.grad_clip, o.weight_decay)
  for i, g in enumerate(grads):
    updates, opt_state = update(g, opt_state, jparams)
    jparams = jax.tree.map(lambda p, u: np.asarray(p + u), jparams, updates)
    for k, tp in tparams.items():
      tp.grad = torch.from_numpy(g[k].copy())
    opt.step()
    for k, tp in tparams.items():
      np.testing.assert_allclose(tp.numpy(), jparams[k], rtol=1e-5, atol=1e-6)
      assert (i == 0) == np.array_equal(jparams[k], params[k])


def test_twin_train_step_is_finite_and_updates():
  config = _config('mixup', warmup_steps=0)
  _, variables = _random_variables(config)
  step, twin = selfsup_step.build_torch(config, _batch(config), variables)
  before = [p.detach().clone() for p in twin.parameters()]
  stats = [b.clone() for b in twin.buffers() if b.dtype.is_floating_point]
  loss = step(0)
  assert math.isfinite(float(loss))
  assert all(not torch.equal(a, b) for a, b in zip(before, twin.parameters()))
  after = [b for b in twin.buffers() if b.dtype.is_floating_point]
  assert stats and all(not torch.equal(a, b) for a, b in zip(stats, after))
