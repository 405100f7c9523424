"""The VRNN step benchmark runs end to end, and its PyTorch twin is the JAX model, step for step."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from benchmarks import harness
from benchmarks import torch_vrnn
from benchmarks import vrnn_step
from configs import vrnn as vrnn_configs
from tests import helpers
from vrnn import losses
from vrnn import train as vrnn_train

SMOKE = dict(variant='smoke', batch=4, max_len=8)
TINY = dict(h_dim=8, phi_x_dim=4, phi_z_dim=5, hidden_dim=6, z_dim=3, num_mixtures=2)


def _tiny_config(variant='handwriting'):
  config = vrnn_step.make_config(variant, batch=4, max_len=7)
  config.model.update(TINY)
  return config


def _random_params(config, seed=0):
  """The JAX model and random parameters of its shapes, biases included (nothing compiled)."""
  model = vrnn_train.make_model(config)
  example = jnp.zeros((1, vrnn_train.x_dim(config)), jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), example)
  rng = np.random.default_rng(seed)
  fill = lambda a: (rng.standard_normal(a.shape, dtype=np.float32) /
                    np.sqrt(a.shape[0] if len(a.shape) > 1 else 4.0))
  return model, jax.tree.map(fill, shapes)


def _twin(config, params):
  twin = torch_vrnn.from_config(config, vrnn_train.x_dim(config))
  torch_vrnn.load_flax_params(twin, params)
  return twin


def _inputs(config, key):
  """Data with a padded sequence, and the eps that `losses.step_terms` draws from `key`."""
  data = vrnn_step.synthetic_data(config)
  assert data['mask'].min() == 0 and data['mask'].max() == 1
  eps = jax.random.normal(key, data['x'].shape[:2] + (config.model.z_dim,), jnp.float32)
  return data, np.asarray(eps)


def _torch(a):
  return torch.from_numpy(np.array(a, np.float32))   # a writable copy


def test_main_prints_a_ratio(capsys):
  out = vrnn_step.main(['--variant', SMOKE['variant'], '--batch', str(SMOKE['batch']),
                        '--max_len', str(SMOKE['max_len']), '--steps', '1', '--rounds', '1'])
  text = capsys.readouterr().out
  helpers.assert_ends_with_ratio(text)
  assert {'jax_s_per_step', 'torch_hoisted_s_per_step', 'torch_naive_s_per_step'} <= set(out)
  assert 'DIFFERENT' not in text


@pytest.mark.parametrize('variant', vrnn_step.BENCH_VARIANTS)
def test_parameter_counts_are_equal(variant):
  config = vrnn_step.make_config(variant)
  model = vrnn_train.make_model(config)
  example = jnp.zeros((1, vrnn_train.x_dim(config)), jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), example)
  twin = torch_vrnn.from_config(config, vrnn_train.x_dim(config))
  assert torch_vrnn.num_params(twin) == harness.count_params(shapes)
  # and tensor by tensor: every parameter is ported, each to a tensor of its shape
  pairs = torch_vrnn.named_pairs(twin, shapes)
  assert len(pairs) == len(jax.tree.leaves(shapes)) == len(list(twin.parameters()))
  for tp, a in pairs:
    assert tuple(tp.shape) == tuple(reversed(a.shape)), (tp.shape, a.shape)


def test_train_step_matches_torch_twin():
  """The benchmark's own JAX train step against both torch versions, from the same random
  weights with the same eps on padded data: loss, metrics, every gradient and the parameters
  after one clipped Adam step."""
  config = vrnn_step.make_config(**SMOKE)   # the sizes of test_main: one compile, cached
  config.loss.free_bits = 1.5   # above some dimensions' KL per step at init: free bits bind
  step_fn, state, batch_fn, key = vrnn_step.build_jax(config, vrnn_step.synthetic_data(config))
  model, params = _random_params(config)
  batch = batch_fn(0)
  x, mask = np.asarray(batch['x']), np.asarray(batch['mask'])
  assert mask.min() == 0 and mask.max() == 1
  step_key = jax.random.fold_in(key, 0)   # what train_step uses at step 0
  eps = _torch(jax.random.normal(step_key, x.shape[:2] + (config.model.z_dim,), jnp.float32))
  grads, jmetrics = jax.jit(lambda p: jax.grad(losses.loss_fn, has_aux=True)(
      p, model, x, mask, step_key, 1.0, config.loss.free_bits))(params)
  assert float(jmetrics['kl_penalty']) > float(jmetrics['kl'])
  # Adam's moments start at zero: only the parameters differ from the initial state
  start = state.replace(params=jax.device_put(params, jax.tree.leaves(state.params)[0].sharding))
  new_state, metrics = step_fn(start, batch, key)
  np.testing.assert_allclose(float(metrics['loss']), float(jmetrics['loss']), rtol=1e-6)
  assert float(metrics['grad_norm']) > config.optim.grad_clip   # clipping is exercised

  xt, mt = _torch(x), _torch(mask)
  for naive in (False, True):
    twin = _twin(config, params)
    loss, tmetrics = torch_vrnn.loss_fn(twin, xt, mt, eps, naive=naive,
                                        free_bits=config.loss.free_bits)
    assert set(tmetrics) == set(jmetrics)
    for k in tmetrics:
      np.testing.assert_allclose(tmetrics[k].item(), float(jmetrics[k]), rtol=1e-5,
                                 err_msg=f'{k} naive={naive}')
    loss.backward()
    for tp, g in torch_vrnn.named_pairs(twin, grads):
      g = np.asarray(g)
      np.testing.assert_allclose(tp.grad.numpy(), g.T if g.ndim == 2 else g, rtol=1e-4,
                                 atol=1e-5 * np.abs(g).max(), err_msg=f'naive={naive}')
    opt = torch_vrnn.make_optimizer(twin, config.optim.lr)
    torch_vrnn.train_step(twin, opt, xt, mt, config.optim.grad_clip, eps, naive=naive,
                          free_bits=config.loss.free_bits)
    for tp, p in torch_vrnn.named_pairs(twin, new_state.params):
      p = np.asarray(p)
      np.testing.assert_allclose(tp.detach().numpy(), p.T if p.ndim == 2 else p, atol=1e-6,
                                 err_msg=f'naive={naive}')


@pytest.mark.parametrize('variant', ['gauss', 'vrnn_i', 'rnn_gmm', 'mnist_rows'])
def test_other_variants_loss_matches_jax(variant):
  config = _tiny_config(variant)
  model, params = _random_params(config)
  key = jax.random.PRNGKey(2)
  data, eps = _inputs(config, key)
  jloss, _ = jax.jit(lambda p: losses.loss_fn(p, model, data['x'], data['mask'], key))(params)
  twin = _twin(config, params)
  with torch.no_grad():
    for naive in (False, True):
      loss, _ = torch_vrnn.loss_fn(twin, _torch(data['x']), _torch(data['mask']), _torch(eps),
                                   naive=naive)
      np.testing.assert_allclose(loss.item(), float(jloss), rtol=1e-5, err_msg=f'naive={naive}')


def test_padding_does_not_change_a_sequence_score():
  """What follows a sequence's last real step (here: garbage) does not enter its terms."""
  config = _tiny_config()
  _, params = _random_params(config)
  twin = _twin(config, params)
  data = vrnn_step.synthetic_data(config)
  x, mask = _torch(data['x']), _torch(data['mask'])
  gen = torch.Generator().manual_seed(0)
  eps = torch.randn(x.shape[:2] + (config.model.z_dim,), generator=gen)
  noisy = x + 5.0 * (1 - mask)[..., None] * torch.randn(x.shape, generator=gen)
  with torch.no_grad():
    for naive in (False, True):
      f = twin.terms_naive if naive else twin.terms
      a, b = f(x, mask, eps), f(noisy, mask, eps)
      for u, v in zip(a, b):
        np.testing.assert_allclose(u.sum(1).numpy(), v.sum(1).numpy(), rtol=1e-6)
        assert torch.all(u[mask == 0] == 0)


def test_lstm_forget_bias_starts_at_one():
  cell = torch_vrnn.LSTM(3, 4)
  np.testing.assert_array_equal(cell.linear.bias.detach().numpy(), [0] * 4 + [1] * 4 + [0] * 8)


def test_twin_train_step_is_finite_and_updates():
  config = _tiny_config()
  data = vrnn_step.synthetic_data(config)
  for naive in (False, True):
    step, twin = vrnn_step.build_torch(config, data, naive=naive)
    before = [p.detach().clone() for p in twin.parameters()]
    loss = step(0)
    assert math.isfinite(float(loss))
    assert all(p.grad is not None for p in twin.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, twin.parameters()))
