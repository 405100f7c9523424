"""The SPS step benchmark runs end to end, and its PyTorch twin is the same model as the JAX one."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from benchmarks import harness
from benchmarks import sps_step
from benchmarks import torch_sps
from sps import losses as sps_losses
from sps import train as sps_train
from sps.models import SPS
from tests import helpers

TINY = dict(batch=2, frames=6, prior_width=8, enc_channels=(4, 8, 16), dec_channels=(16, 8, 4))


def _jax_params(config, seed=0):
  """The JAX model and random parameters of its shapes (eval_shape: nothing to compile)."""
  model, _, _ = sps_train.make_init(config)
  example = jnp.zeros((1, config.data.num_frames) + sps_train.IMAGE_SHAPE, jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), example)
  rng = np.random.default_rng(seed)
  fill = lambda a: (rng.standard_normal(a.shape, dtype=np.float32) /
                    np.sqrt(np.prod(a.shape[:-1]) if len(a.shape) > 1 else 10.0))
  return model, jax.tree.map(fill, shapes)


def _twin(config, params, channels_last=True):
  twin = torch_sps.from_config(config, channels_last=channels_last)
  torch_sps.load_flax_params(twin, params)
  return twin


def test_main_prints_a_ratio(capsys):
  sps_step.main(['--batch', '2', '--frames', '6', '--steps', '1', '--rounds', '1',
                 '--prior_width', '8', '--enc_channels', '4,8,16', '--dec_channels', '16,8,4'])
  helpers.assert_ends_with_ratio(capsys.readouterr().out)


@pytest.mark.parametrize('sizes', [TINY, dict(batch=32, frames=20, prior_width=256)],
                         ids=['tiny', 'released'])
def test_parameter_counts_are_equal(sizes):
  config = sps_step.make_config(**sizes)
  model, _, _ = sps_train.make_init(config)
  example = jnp.zeros((1, config.data.num_frames) + sps_train.IMAGE_SHAPE, jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), example)
  twin = torch_sps.from_config(config)
  assert torch_sps.num_params(twin) == harness.count_params(shapes)
  # and tensor by tensor: the same multiset of sizes
  jax_sizes = sorted(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes))
  assert sorted(p.numel() for p in twin.parameters()) == jax_sizes


@pytest.mark.parametrize('channels_last', [True, False], ids=['channels_last', 'nchw'])
def test_twin_forward_matches_jax_model(channels_last):
  config = sps_step.make_config(**TINY)
  model, params = _jax_params(config)
  twin = _twin(config, params, channels_last)
  rng = np.random.default_rng(0)
  x = rng.random((5, 32, 32, 3), dtype=np.float32)
  z = rng.standard_normal((5, 3), dtype=np.float32)
  z_seq = rng.standard_normal((2, 5, 3), dtype=np.float32)
  teacher = rng.random((2, 5)) < 0.5
  with torch.no_grad():
    mu, logvar = twin.encoder(twin.to_images(torch.from_numpy(x)))
    dec = twin.decoder(torch.from_numpy(z))
    pred = twin.prior(torch.from_numpy(z_seq), torch.from_numpy(teacher))
  jmu, jlogvar, jdec, jpred = jax.jit(lambda p: (
      *model.apply(p, x, method=SPS.encode), model.apply(p, z, method=SPS.decode),
      model.apply(p, z_seq, teacher, method=SPS.predict)))(params)
  assert dec.shape == (5, 3, 32, 32) and jdec.shape == (5, 32, 32, 3)
  assert pred.shape == jpred.shape == (2, 5, 3)
  np.testing.assert_allclose(mu.numpy(), jmu, atol=1e-5)
  np.testing.assert_allclose(logvar.numpy(), jlogvar, atol=1e-5)
  np.testing.assert_allclose(dec.permute(0, 2, 3, 1).numpy(), jdec, atol=1e-5)
  np.testing.assert_allclose(pred.numpy(), jpred, atol=1e-5)


def test_twin_loss_matches_jax_loss():
  """Deterministic settings (no sampling): plain autoencoder, full teacher forcing."""
  config = sps_step.make_config(**TINY)
  config.model.vae = False
  model, params = _jax_params(config)
  twin = _twin(config, params)
  frames = sps_step.synthetic_frames(config)
  x = torch.from_numpy(frames)
  _, terms = torch_sps.loss_fn(twin, config, x, 1.0, with_symmetry=False)
  jterms = jax.jit(lambda p: sps_losses.loss_fn(p, model, config, frames, jax.random.PRNGKey(0),
                                                 1.0, with_symmetry=False)[1])(params)
  assert set(terms) == set(jterms)
  for k in terms:
    np.testing.assert_allclose(terms[k].item(), float(jterms[k]), rtol=1e-4, err_msg=k)

  # a symmetry path with the same transform g on both sides
  gen = torch.Generator().manual_seed(0)
  rot = torch_sps.random_rotation(3, config.batch_size, gen)
  g = (rot, torch.randn(config.batch_size, 3, generator=gen))
  z = torch.randn(config.batch_size, config.data.num_frames, 3, generator=gen)
  c = config.loss.rnn_min_context
  with torch.no_grad():
    t_losses = torch_sps.prediction_losses(twin, z, x, g, 1.0, c)
  j_losses = jax.jit(lambda p, z, g: sps_losses.prediction_losses(
      lambda z_in, teacher, key: model.apply(p, z_in, teacher, method=SPS.predict),
      functools.partial(model.apply, p, method=SPS.decode),
      z, frames, g, jax.random.PRNGKey(0), 1.0, c))(params, z.numpy(), tuple(a.numpy() for a in g))
  np.testing.assert_allclose([float(v) for v in t_losses], [float(v) for v in j_losses[:2]],
                             rtol=1e-4)


def test_twin_train_step_is_finite_and_updates():
  config = sps_step.make_config(**TINY)
  frames = sps_step.synthetic_frames(config)
  step, twin = sps_step.build_torch(config, frames)
  total, terms = torch_sps.loss_fn(twin, config, torch.from_numpy(frames), 0.5,
                                   torch.Generator().manual_seed(0))
  assert all(math.isfinite(v.item()) for v in terms.values())
  assert {'z_pred/T:0,2', 'image_pred/R:0,2', 'image_pred/identity', 'kl'} <= set(terms)
  before = [p.detach().clone() for p in twin.parameters()]
  loss = step(0)
  assert math.isfinite(float(loss))
  assert all(p.grad is not None for p in twin.parameters())
  assert any(not torch.equal(a, b) for a, b in zip(before, twin.parameters()))


def test_random_transforms_are_proper_rotations():
  gen = torch.Generator().manual_seed(0)
  for n in (2, 3):
    q = torch_sps.random_rotation(n, 256, gen)
    np.testing.assert_allclose((q @ q.transpose(1, 2)).numpy(),
                               np.broadcast_to(np.eye(n), (256, n, n)), atol=1e-5)
    np.testing.assert_allclose(torch.linalg.det(q).numpy(), 1.0, atol=1e-5)
  z = torch.randn(4, 7, 3, generator=gen)
  g = (torch_sps.random_rotation(3, 4, gen), torch.randn(4, 3, generator=gen))
  np.testing.assert_allclose(torch_sps.act_inverse(g, torch_sps.act(g, z)).numpy(), z.numpy(),
                             atol=1e-5)
