"""The vle step benchmark runs end to end, and its PyTorch twin is the JAX model, step for step."""
import math
import re

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from benchmarks import harness
from benchmarks import torch_vle
from benchmarks import vle_step
from tests import helpers
from vle import losses as vle_losses
from vle import train as vle_train

# the benchmark's tiny sizes: vanilla has the fewest parameters to initialise (compiling the
# random initialisation takes longer than the step), lax convolutions compile faster than
# the CPU default (matmul)
SMOKE = dict(variant='vanilla', batch=2, size=16, tokens=2, conv_impl='lax')
SMOKE_ARGS = [f'--{k}={v}' for k, v in SMOKE.items()]
# smaller still, with memory != channels[0] so that the encoder's second conv reads the memory
TINY = dict(channels=(4, 6, 6), memory=5, token_channels=2, decoder_channels=(6, 5, 4),
            saliency_features=3)


def _config(kind='saliency', baseline=True):
  config = vle_step.make_config(**{**SMOKE, 'batch': 3, 'tokens': 3})
  config.model.update({'kind': kind, **TINY})
  config.baseline.enabled = baseline
  vle_train.validate(config)
  return config


def _shapes(config):
  return jax.eval_shape(vle_train.make_init(config)[2], jax.random.PRNGKey(0)).params


def _random_params(config, seed=0):
  """Random parameters of the JAX state's shapes, biases included (nothing compiled)."""
  rng = np.random.default_rng(seed)
  fill = lambda a: (rng.standard_normal(a.shape, dtype=np.float32) /
                    np.sqrt(np.prod(a.shape[:-1]) if len(a.shape) > 1 else 4.0))
  return jax.tree.map(fill, _shapes(config))


def _data(config, counts, seed=0):
  """Random images (B, H, W, 3) in [0, 1] and the given token counts."""
  rng = np.random.default_rng(seed)
  size = config.data.size
  return {'image': rng.random((len(counts), size, size, 3), dtype=np.float32),
          'count': np.asarray(counts, np.int32)}


def _twin(config, params, nhwc=False):
  twin = torch_vle.from_config(config)
  torch_vle.load_flax_params(twin, params)
  return twin.to(memory_format=torch.channels_last) if nhwc else twin


def _images(data, nhwc=False):
  x = torch.from_numpy(data['image']).permute(0, 3, 1, 2)   # NHWC in memory: channels_last
  return x if nhwc else x.contiguous()


def _vae_noise(key, config, batch):
  """The noise the JAX baseline draws from `key`, NCHW: like its mu (B, T, h, w)."""
  h = config.data.size // 2 ** len(config.model.channels)
  eps = jax.random.normal(key, (batch, h, h, config.model.token_channels))
  return torch.from_numpy(np.array(eps)).permute(0, 3, 1, 2)


def test_main_prints_a_ratio(capsys):
  out = vle_step.main(SMOKE_ARGS + ['--steps', '1', '--rounds', '1'])
  text = capsys.readouterr().out
  helpers.assert_ends_with_ratio(text)
  assert {'jax_s_per_step', 'torch_s_per_step', 'ratio', 'torch_nchw_s_per_step',
          'torch_nhwc_s_per_step'} <= set(out)
  assert out['torch_s_per_step'] == min(out['torch_nchw_s_per_step'],
                                        out['torch_nhwc_s_per_step'])
  assert 'DIFFERENT' not in text
  # the same weights and batch: JAX and both torch versions report the same first loss
  first = [float(v) for v in re.findall(r'first loss (\S+)', text)]
  assert len(first) == 3, text
  np.testing.assert_allclose(first[1:], first[0], rtol=1e-4)


@pytest.mark.parametrize('variant', ['vanilla', 'saliency', 'inherent'])
def test_parameter_counts_are_equal(variant):
  config = vle_step.make_config(variant)   # the default sizes
  shapes = _shapes(config)
  twin = torch_vle.from_config(config)
  assert torch_vle.num_params(twin) == harness.count_params(shapes)
  # and tensor by tensor: every parameter is ported once, each to a tensor of its shape
  pairs = torch_vle.named_pairs(twin, shapes)
  assert len(pairs) == len(jax.tree.leaves(shapes)) == len(list(twin.parameters()))
  assert len({id(tp) for tp, _, _ in pairs}) == len(pairs)
  for tp, a, perm in pairs:
    want = tuple(a.shape[i] for i in perm) if perm else tuple(a.shape)
    assert tuple(tp.shape) == want, (tp.shape, a.shape)


@pytest.mark.parametrize('kind', ['saliency', 'inherent'])
def test_loss_and_gradients_match_jax(kind):
  """The masked kinds (vanilla and the baseline: test_train_step_matches_torch_twin) from the
  same random weights and images, with token counts from 1 to the maximum: every metric and
  every gradient, in both torch layouts."""
  config = _config(kind, baseline=False)
  nets = vle_train.make_models(config)
  params = _random_params(config)
  data = _data(config, [1, 3, 2])
  key = jax.random.PRNGKey(3)
  grads, jmetrics = jax.jit(lambda p: jax.grad(vle_losses.loss_fn, has_aux=True)(
      p, nets, config, data, key))(params)
  count = torch.from_numpy(data['count']).long()
  for nhwc in (False, True):
    twin = _twin(config, params, nhwc)
    loss, tmetrics = torch_vle.loss_fn(twin, _images(data, nhwc), count)
    assert set(tmetrics) == set(jmetrics)
    for k in tmetrics:
      np.testing.assert_allclose(tmetrics[k].item(), float(jmetrics[k]), rtol=1e-4,
                                 err_msg=f'{k} nhwc={nhwc}')
    loss.backward()
    for tp, g, perm in torch_vle.named_pairs(twin, grads):
      g = torch_vle.torch_layout(g, perm)
      np.testing.assert_allclose(tp.grad.numpy(), g, rtol=1e-3, atol=1e-4 * np.abs(g).max(),
                                 err_msg=f'nhwc={nhwc}')


def test_train_step_matches_torch_twin():
  """The benchmark's own JAX train step (vanilla and the baseline) and the twin's, from the
  same random weights on the same batch and VAE noise: every metric, and the parameters
  after one step of Adam on clipped gradients."""
  config = vle_step.make_config(**SMOKE)   # the sizes of test_main: its compilations, cached
  data = _data(config, [1, config.tokens.train_max])
  step_fn, state, batch_fn, key = vle_step.build_jax(config, data)
  params = _random_params(config)
  start = state.replace(params=jax.device_put(params, jax.tree.leaves(state.params)[0].sharding))
  new_state, jmetrics = step_fn(start, batch_fn(0), key)
  assert float(jmetrics['grad_norm']) > config.optim.grad_clip   # clipping is exercised
  # the JAX step's VAE noise: its own key stream, folded with the step
  vae_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), vle_train.VAE_STREAM)
  eps = _vae_noise(jax.random.fold_in(vae_key, 0), config, 2)
  twin = _twin(config, params)
  images, count = _images(data), torch.from_numpy(data['count']).long()
  with torch.no_grad():
    _, tmetrics = torch_vle.loss_fn(twin, images, count, eps)
  for k in tmetrics:
    np.testing.assert_allclose(tmetrics[k].item(), float(jmetrics[k]), rtol=1e-4, err_msg=k)
  opt = torch_vle.make_optimizer(twin, config.optim)
  torch_vle.train_step(twin, opt, images, count, config.optim.grad_clip, eps)
  for tp, p, perm in torch_vle.named_pairs(twin, jax.device_get(new_state.params)):
    np.testing.assert_allclose(tp.detach().numpy(), torch_vle.torch_layout(p, perm), atol=2e-5)


def test_twin_train_step_is_finite_and_updates():
  config = _config('saliency')
  data = _data(config, [1, 2, 3])
  for version in vle_step.TORCH_VERSIONS:
    step, twin = vle_step.build_torch(config, data, version=version)
    before = [p.detach().clone() for p in twin.parameters()]
    loss = step(0)
    assert math.isfinite(float(loss))
    assert all(p.grad is not None for p in twin.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, twin.parameters()))
