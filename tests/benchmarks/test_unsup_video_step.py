"""The unsup_video step benchmark runs end to end; its torch twin matches JAX, step for step."""
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from benchmarks import harness
from benchmarks import torch_unsup_video as tuv
from benchmarks import unsup_video_step
from common import train_state
from tests import helpers
from unsup_video import train as uv_train

TINY = dict(batch=4, hidden=16, canvas=32, num_frames=8, num_input=4)
TINY_ARGS = [f'--{k}={v}' for k, v in TINY.items()]
STRUCTURES = [   # (mode, conditional, layers)
    ('composite', True, 1), ('composite', False, 2), ('future', True, 2),
    ('future', False, 1), ('autoencoder', True, 1), ('autoencoder', False, 2)]


def _config(mode='composite', conditional=True, layers=1, hidden=TINY['hidden'], **optim):
  config = unsup_video_step.make_config(**{**TINY, 'hidden': hidden}, layers=layers,
                                        conditional=conditional)
  config.model.mode = mode
  config.optim.update(optim)
  uv_train.validate(config)
  return config


def _shapes(config):
  model = uv_train.make_model(config)
  example = jnp.zeros((1, config.data.canvas, config.data.canvas), jnp.float32)
  return model, jax.eval_shape(model.init, jax.random.PRNGKey(0), example)


def _random_params(config, seed=0):
  """The JAX model and random parameters of its shapes, biases included (nothing compiled):
  large enough for every gate to be in its nonlinear range."""
  model, shapes = _shapes(config)
  rng = np.random.default_rng(seed)
  fill = lambda a: (rng.standard_normal(a.shape, dtype=np.float32) /
                    np.sqrt(a.shape[0] if len(a.shape) > 1 else 4.0))
  return model, jax.tree.map(fill, shapes)


def _twin(config, params):
  twin = tuv.from_config(config)
  tuv.load_flax_params(twin, params)
  return twin


@pytest.fixture(scope='module')
def frames():
  """The benchmark's own fixed Moving MNIST batch at the tiny sizes (B, T, H, W)."""
  f, _ = unsup_video_step.synthetic_data(_config())
  assert f.shape == (4, 8, 32, 32) and f.min() >= 0 and f.max() <= 1 and f.max() > 0.5
  return f


def _np(t):
  return t.detach().numpy()


def _as_torch_layout(a):
  a = np.asarray(a)
  return a.T if a.ndim == 2 else a


def test_main_prints_a_ratio(capsys, frames):
  out = unsup_video_step.main(TINY_ARGS + ['--steps', '1', '--rounds', '1'])
  text = capsys.readouterr().out
  helpers.assert_ends_with_ratio(text)
  assert {'jax_s_per_step', 'torch_hoisted_s_per_step', 'torch_naive_s_per_step'} <= set(out)
  assert 'DIFFERENT' not in text
  # the same weights and frames: JAX and both torch versions start from the same loss
  first = [float(v) for v in re.findall(r'first loss (\S+)', text)]
  assert len(first) == 3, text
  np.testing.assert_allclose(first[1:], first[0], rtol=1e-5)


@pytest.mark.parametrize('mode,conditional,layers', STRUCTURES)
def test_parameter_counts_are_equal(mode, conditional, layers):
  config = _config(mode, conditional, layers)
  _, shapes = _shapes(config)
  twin = tuv.from_config(config)
  assert tuv.num_params(twin) == harness.count_params(shapes)
  # and tensor by tensor: every parameter is ported, each to a tensor of its shape
  pairs = tuv.named_pairs(twin, shapes)
  assert len(pairs) == len(jax.tree.leaves(shapes)) == len(list(twin.parameters()))
  assert len({id(tp) for tp, _ in pairs}) == len(pairs)
  for tp, a in pairs:
    assert tuple(tp.shape) == tuple(reversed(a.shape)), (tp.shape, a.shape)


def test_parameter_count_at_the_paper_sizes():
  config = unsup_video_step.make_config()
  _, shapes = _shapes(config)
  n = harness.count_params(shapes)
  with torch.device('meta'):
    assert tuv.num_params(tuv.from_config(config)) == n
  # 3 LSTMs of 2048 on 4096 inputs (wx, wh, bias) and 2 readouts 2048 -> 4096
  assert n == 3 * (4096 * 8192 + 2048 * 8192 + 8192) + 2 * (2048 * 4096 + 4096)


@pytest.mark.parametrize('mode,conditional,layers',
                         [('composite', True, 1), ('future', False, 2), ('autoencoder', True, 2)])
def test_loss_gradients_and_update_match_jax(frames, mode, conditional, layers):
  """From the same random weights on the same frames: the loss and its terms, every
  gradient (both torch versions) and the parameters after one clipped RMSprop step."""
  # a tiny clip (clipping active) and a large lr (an update far above float32 rounding)
  config = _config(mode, conditional, layers, grad_clip=0.5, lr=0.01)
  model, params = _random_params(config)
  tx = uv_train.make_optimizer(config)

  def jax_step(params, frames):   # one compile for both
    grads, metrics = jax.grad(uv_train.loss_fn, has_aux=True)(params, model, config, frames)
    return grads, metrics, *train_state.apply_gradients(train_state.create(params, tx), grads,
                                                        tx)

  grads, jmetrics, new_state, norms = jax.jit(jax_step)(params, frames)
  assert float(norms['grad_norm']) > 10 * config.optim.grad_clip   # clipping is exercised

  x = torch.from_numpy(frames)
  for naive in (False, True):
    twin = _twin(config, params)
    loss, tmetrics = tuv.loss_fn(twin, x, config.data.num_input, naive=naive)
    assert set(tmetrics) == set(jmetrics)
    for k in tmetrics:
      np.testing.assert_allclose(tmetrics[k].item(), float(jmetrics[k]), rtol=1e-5,
                                 err_msg=f'{k} naive={naive}')
    loss.backward()
    for tp, g in tuv.named_pairs(twin, grads):
      g = _as_torch_layout(g)
      np.testing.assert_allclose(_np(tp.grad), g, rtol=1e-4, atol=1e-5 * np.abs(g).max(),
                                 err_msg=f'naive={naive}')
    before = [_np(tp).copy() for tp, _ in tuv.named_pairs(twin, params)]
    opt = tuv.make_optimizer(twin, config.optim)
    opt.step()
    for (tp, p), p0 in zip(tuv.named_pairs(twin, new_state.params), before):
      update = _as_torch_layout(p) - p0
      assert np.abs(update).max() > 1e-4
      np.testing.assert_allclose(_np(tp) - p0, update, rtol=1e-4,
                                 atol=1e-4 * np.abs(update).max(), err_msg=f'naive={naive}')


@pytest.mark.parametrize('optim', [
    dict(name='rmsprop'), dict(name='rmsprop', momentum=0.9, weight_decay=0.1),
    dict(name='adam', eps=1e-8), dict(name='adam', eps=1e-8, weight_decay=0.1),
    dict(name='momentum', momentum=0.9, weight_decay=0.1)])
def test_optimizer_matches_optax(optim):
  """Three clipped steps on the same gradients give the same parameters as optax."""
  config = _config(grad_clip=1.0, lr=0.01, **optim)
  rng = np.random.default_rng(0)
  shapes = [(5, 3), (7,), (2, 4)]
  params = {str(i): rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
  grads = [{k: rng.standard_normal(v.shape).astype(np.float32) *
            rng.choice([1e-4, 1e-2, 1.0], v.shape).astype(np.float32)
            for k, v in params.items()} for _ in range(3)]
  tx = uv_train.make_optimizer(config)
  state = train_state.create(jax.tree.map(jnp.asarray, params), tx)
  tparams = {k: torch.from_numpy(v.copy()) for k, v in params.items()}
  opt = tuv.Optimizer(list(tparams.values()), **{
      k: config.optim[k] for k in ('lr', 'grad_clip', 'weight_decay', 'name', 'momentum',
                                   'decay', 'eps')})
  for g in grads:
    state, norms = train_state.apply_gradients(state, g, tx)
    assert float(norms['grad_norm']) > config.optim.grad_clip
    for k, tp in tparams.items():
      tp.grad = torch.from_numpy(g[k].copy())
    opt.step()
    for k, tp in tparams.items():
      np.testing.assert_allclose(_np(tp), np.asarray(state.params[k]), rtol=1e-5, atol=1e-6)


def test_torch_rmsprop_is_not_optax_rmsprop():
  """Why the twin's RMSprop is hand-written: torch adds eps outside the square root."""
  config = _config(grad_clip=0.0, lr=0.01)
  g = np.full((3,), 1e-3, np.float32)   # 0.1 * g^2 = 1e-7, below eps = 1e-6
  tx = uv_train.make_optimizer(config)
  state, _ = train_state.apply_gradients(train_state.create(jnp.zeros(3), tx), g, tx)
  p = torch.zeros(3, requires_grad=True)
  p.grad = torch.from_numpy(g)
  torch.optim.RMSprop([p], lr=config.optim.lr, alpha=config.optim.decay,
                      eps=config.optim.eps).step()
  optax_update = float(state.params[0])
  np.testing.assert_allclose(optax_update, -0.01 * 1e-3 / np.sqrt(1e-7 + 1e-6), rtol=1e-5)
  assert abs(p[0].item()) > 2.5 * abs(optax_update)   # sqrt(nu) + eps: ~3x larger here


def test_lstm_initialisation():
  layer = tuv.LSTMLayer(3, 4, init_scale=0.01, forget_bias=1.5)
  np.testing.assert_array_equal(_np(layer.wh.bias), [0] * 4 + [1.5] * 4 + [0] * 8)
  assert layer.wx.bias is None and layer.wx.weight.abs().max() <= 0.01
  assert not tuv.LSTMLayer(0, 4).has_input


def test_twin_train_step_is_finite_and_updates(frames):
  config = _config()
  for naive in (False, True):
    step, twin = unsup_video_step.build_torch(config, frames, naive=naive)
    before = [p.detach().clone() for p in twin.parameters()]
    loss = step(0)
    assert math.isfinite(float(loss))
    assert all(not torch.equal(a, b) for a, b in zip(before, twin.parameters()))
