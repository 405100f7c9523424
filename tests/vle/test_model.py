"""VLE models and losses: the residual loop, token-count masking, memory per image, the mask
losses and the reconstruction loss by hand, ownership and ARI on known cases, the token-count
schedule and the equal-size baseline."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import vle as configs
from vle import losses
from vle import models
from vle import train

SIZE = 16
TINY = dict(channels=(4, 8), memory=4, token_channels=2, decoder_channels=(8, 4),
            saliency_features=4)


def _images(n=3, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, SIZE, SIZE, 3), minval=-1, maxval=1)


def _init(net, x):
  if isinstance(net, models.VAE):
    return train.init_vae(net, jax.random.PRNGKey(1), x)
  return train.init_vle(net, jax.random.PRNGKey(1), x)


NETS = [models.VLE(kind=k, **TINY) for k in models.KINDS] + [
    models.VAE(channels=(4, 8), token_channels=2, decoder_channels=(8, 4))]
IDS = list(models.KINDS) + ['baseline']


@pytest.mark.parametrize('net', NETS, ids=IDS)
def test_token_contributions_sum_to_the_reconstruction(net):
  x = _images()
  outs = models.run_tokens(net, _init(net, x), x, jnp.array([5, 5, 5]), 5)
  chex_recon = np.asarray(outs['recon'])
  np.testing.assert_allclose(np.cumsum(np.asarray(outs['contribution']), 0), chex_recon,
                             atol=1e-5)
  assert outs['token'].shape == (5, 3, SIZE // 4, SIZE // 4, 2)
  # Each token is the residual left by the ones before it, normalised: the contribution of
  # token n is mask_n * (Dec(token_n) * std_n + mean_n) of that residual.
  masks = np.asarray(outs['mask'])
  assert masks.shape == (5, 3, SIZE, SIZE, 1) and masks.min() >= 0 and masks.max() <= 1
  if getattr(net, 'kind', None) == 'vanilla' or isinstance(net, models.VAE):
    np.testing.assert_array_equal(masks, 1.0)


@pytest.mark.parametrize('net', NETS[:3], ids=IDS[:3])
def test_token_count_masking(net):
  x = _images()
  params = _init(net, x)
  count = jnp.array([1, 3, 5])
  outs = models.run_tokens(net, params, x, count, 5)
  recon, contrib = np.asarray(outs['recon']), np.asarray(outs['contribution'])
  for b, k in enumerate([1, 3, 5]):
    np.testing.assert_array_equal(contrib[k:, b], 0.0)           # inactive steps add nothing
    for n in range(k, 5):
      np.testing.assert_array_equal(recon[n, b], recon[k - 1, b])   # ... and keep the recon
  # An image's tokens do not depend on the others' counts or on the scan length.
  alone = models.run_tokens(net, params, x, jnp.array([3, 3, 3]), 3)
  np.testing.assert_allclose(recon[2, 1], np.asarray(alone['recon'])[2, 1], atol=1e-6)
  # The loss does not see inactive steps: its gradient is the same with a longer scan.
  def loss(p, steps):
    o = models.run_tokens(net, p, x, count, steps)
    return losses.reconstruction_loss(o['recon'], x, count, 0.3)[0]
  g5, g7 = jax.grad(loss)(params, 5), jax.grad(loss)(params, 7)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-6, rtol=1e-5), g5, g7)


def test_memory_is_per_image_and_carries_across_tokens():
  net = models.VLE(kind='vanilla', **TINY)
  x = _images(2)
  params = _init(net, x)
  both = models.run_tokens(net, params, x, jnp.array([3, 3]), 3)
  one = models.run_tokens(net, params, x[1:], jnp.array([3]), 3)
  np.testing.assert_allclose(np.asarray(both['recon'])[:, 1], np.asarray(one['recon'])[:, 0],
                             atol=1e-5)
  # The memory changes what token 2 makes of a residual: rerunning step 2 from a zero memory
  # gives a different token.
  carry = net.initial_carry(2, SIZE)
  carry, _ = net.apply(params, carry, x, jnp.ones(2, bool), method=net.step)
  _, with_memory = net.apply(params, carry, x, jnp.ones(2, bool), method=net.step)
  reset = (carry[0], models.zero_state(2, SIZE // 2, TINY['memory']), ())
  _, without = net.apply(params, reset, x, jnp.ones(2, bool), method=net.step)
  assert not np.allclose(with_memory['token'], without['token'], atol=1e-4)


def test_normalise_per_image():
  r = jnp.stack([jnp.full((4, 4, 3), 2.0).at[0, 0, 0].set(5.0), jnp.linspace(-1, 1, 48)
                 .reshape(4, 4, 3)])
  rn, (mean, std) = models.normalise(r, 0.0)
  np.testing.assert_allclose(np.asarray(rn).reshape(2, -1).mean(1), 0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(rn).reshape(2, -1).std(1), 1, atol=1e-5)
  assert float(mean[0, 0, 0, 0]) == pytest.approx(2 + 3 / 48)
  np.testing.assert_allclose(np.asarray(rn * std + mean), np.asarray(r), atol=1e-6)


def test_reconstruction_loss_by_hand():
  x = jnp.zeros((2, 1, 1, 1))
  # Recon after each of 3 tokens: image 0 errors 3, 2, 1 (count 3); image 1 errors 4, 9 (count 2).
  recon = jnp.array([[3.0, 4.0], [2.0, 9.0], [1.0, 9.0]]).reshape(3, 2, 1, 1, 1)
  loss, terms = losses.reconstruction_loss(recon, x, jnp.array([3, 2]), 0.25)
  aux = (9 + 4 + 1 + 16 + 81) / 5
  final = (1 + 81) / 2
  assert float(terms['aux_mse']) == pytest.approx(aux)
  assert float(terms['final_mse']) == pytest.approx(final)
  assert float(loss) == pytest.approx(0.75 * aux + 0.25 * final)


def test_mask_losses_by_hand():
  # Two images of 2 pixels; 3 tokens; image 1 has 2 tokens.
  m = np.array([[[1.0, 1.0], [0.5, 0.0]],      # token 1 (image 0, image 1)
                [[1.0, 0.0], [0.5, 1.0]],      # token 2
                [[0.0, 1.0], [0.9, 0.9]]])     # token 3 (inactive for image 1)
  got = losses.mask_losses(jnp.asarray(m)[:, :, None, :, None], jnp.array([3, 2]), 5.0)
  mean = lambda a: np.mean(a)
  e = lambda v: np.exp(-5 * v)
  active = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
  binary = np.mean([mean(m[n, b] * (1 - m[n, b])) for n, b in active])
  empty = np.mean([e(mean(m[n, b]**2)) for n, b in active])
  later = [(1, 0), (1, 1), (2, 0)]
  previous = np.mean([e(mean((m[n, b] - m[n - 1, b])**2)) for n, b in later])
  acc = lambda n, b: np.minimum(1, m[:n, b].sum(0))
  accumulated = np.mean([e(mean((m[n, b] - acc(n, b))**2)) for n, b in later])
  for k, v in dict(binary=binary, empty=empty, previous=previous,
                   accumulated=accumulated).items():
    assert float(got[k]) == pytest.approx(v, rel=1e-6), k
  # The numbers themselves, for the first image's third token: covered [1, 1], mask [0, 1].
  assert acc(2, 0).tolist() == [1.0, 1.0] and e(0.5) == pytest.approx(0.0820850)


def test_ownership_painter_order_and_contribution():
  # One image of 3 pixels, 3 tokens. Token 1 covers all, token 2 pixel 1, token 3 pixel 2.
  m = jnp.array([[1, 1, 1], [0, 1, 0], [0, 0.2, 1.0]], jnp.float32)[:, None, None, :, None]
  outs = {'mask': m, 'contribution': jnp.zeros(m.shape[:-1] + (3,))}
  owner = np.asarray(losses.ownership(outs, masked=True))[0, 0]
  # pixel 1: token 2 weight 1 * (1 - 0.2) = 0.8 beats token 3's 0.2.
  assert owner.tolist() == [0, 1, 2]
  c = jnp.array([[1, -5, 0], [2, 1, 0], [0, 0, -0.1]], jnp.float32)[:, None, None, :, None]
  owner = np.asarray(losses.ownership({'mask': m, 'contribution': c * jnp.ones(3)},
                                      masked=False))[0, 0]
  assert owner.tolist() == [1, 0, 2]


@pytest.mark.parametrize('true,pred,ari', [
    ([0, 0, 1, 1], [0, 0, 1, 1], 1.0),
    ([0, 0, 1, 1], [1, 1, 0, 0], 1.0),          # renaming does not matter
    ([0, 0, 1, 2], [0, 0, 1, 1], 0.5714285714285714),   # sklearn's documented example
    ([0, 0, 1, 1], [0, 0, 1, 2], 0.5714285714285714),
    ([0, 0, 0, 0], [0, 1, 2, 3], 0.0),
    ([0, 0, 1, 1], [0, 1, 0, 1], -0.5),
    ([0, 0, 0, 0], [1, 1, 1, 1], 1.0),          # one segment each: sklearn's convention
])
def test_adjusted_rand_index_known_cases(true, pred, ari):
  got = losses.adjusted_rand_index(jnp.array(true), jnp.array(pred), 4, 4)
  assert float(got) == pytest.approx(ari, abs=1e-6)


def test_adjusted_rand_index_by_hand_and_foreground():
  true = np.array([0, 0, 0, 1, 1, 2, 2, 2])
  pred = np.array([0, 0, 1, 1, 1, 2, 2, 0])
  # Contingency n_ij: rows true, columns pred.
  n = np.array([[2, 1, 0], [0, 2, 0], [1, 0, 2]])
  c2 = lambda v: v * (v - 1) / 2
  index, sa, sb = c2(n).sum(), c2(n.sum(1)).sum(), c2(n.sum(0)).sum()
  expected = sa * sb / c2(8)
  hand = (index - expected) / ((sa + sb) / 2 - expected)
  got = losses.adjusted_rand_index(jnp.asarray(true), jnp.asarray(pred), 3, 3)
  assert float(got) == pytest.approx(hand, abs=1e-6)
  # Foreground ARI ignores true label 0: objects 1 and 2 split perfectly -> 1.
  fg = losses.adjusted_rand_index(jnp.asarray(true), jnp.array([5, 5, 5, 0, 0, 1, 1, 1]), 3, 6,
                                  ignore_background=True)
  assert float(fg) == pytest.approx(1.0)
  # Batched: (2, P) -> (2,).
  both = losses.adjusted_rand_index(jnp.stack([true, true]), jnp.stack([pred, true]), 3, 3)
  np.testing.assert_allclose(np.asarray(both), [hand, 1.0], atol=1e-6)


def test_random_labels_score_near_zero():
  rng = np.random.default_rng(0)
  true = rng.integers(0, 5, (4, 4096))
  pred = rng.integers(0, 6, (4, 4096))
  assert np.abs(np.asarray(losses.adjusted_rand_index(true, pred, 5, 6))).max() < 0.01


def test_token_count_schedule():
  c = configs.get_config('vanilla')
  c.tokens.update(dict(train_max=6, mean_start=2.0, mean_end=5.0, ramp_steps=500))
  assert float(train.mean_tokens(c, 0)) == pytest.approx(2.0)
  assert float(train.mean_tokens(c, 250)) == pytest.approx(3.5)
  assert float(train.mean_tokens(c, 500)) == float(train.mean_tokens(c, 900)) == 5.0
  for step, mean in ((0, 2.0), (250, 3.5), (800, 5.0)):
    counts = np.asarray(train.sample_counts(jax.random.PRNGKey(step), 20000, c, step))
    assert counts.min() >= 1 and counts.max() <= 6 and counts.dtype == np.int32
    assert counts.mean() == pytest.approx(mean, abs=0.03)


def test_kl_divergence_by_hand():
  mu = jnp.array([[0.5, -1.0]])
  logvar = jnp.array([[0.0, np.log(2.0)]])
  hand = 0.5 * (0.25) + 0.5 * (2 + 1 - 1 - np.log(2))
  assert float(models.kl_divergence(mu, logvar)[0]) == pytest.approx(hand, rel=1e-6)


@pytest.mark.parametrize('kind', models.KINDS)
def test_baseline_matches_the_vle_parameter_count(kind):
  c = configs.get_config(kind)
  nets, _, init = train.make_init(c)
  shapes = jax.eval_shape(init, jax.random.PRNGKey(0)).params
  n_vle, n_vae = train.num_params(shapes['vle']), train.num_params(shapes['baseline'])
  assert abs(n_vae - n_vle) / n_vle < 0.02, (n_vle, n_vae)
  assert nets['baseline'].token_channels == c.model.token_channels


def test_vae_loss_by_hand():
  c = configs.get_config('smoke')
  vae = models.VAE(channels=(4, 8), token_channels=2, decoder_channels=(8, 4))
  x = _images(2)
  params = _init(vae, x)
  key = jax.random.PRNGKey(5)
  loss, terms = losses.vae_loss(params, vae, c, x, key)
  recon, mu, logvar = vae.apply(params, x, key)
  mse = float(jnp.mean((recon - x)**2))
  kl = float(models.kl_divergence(mu, logvar).mean()) / (SIZE * SIZE * 3)
  assert float(terms['baseline_mse']) == pytest.approx(mse, rel=1e-5)
  assert float(loss) == pytest.approx(mse + c.baseline.kl_weight * kl, rel=1e-5)


def test_token_scans_run_their_stride1_convolutions_in_xla_canonical_order():
  """Both models run in models.run_tokens' lax.scan, where XLA's CPU convolution is fast only in
  its canonical order: under conv_impl='auto' the gradient of the vle loss (the VLE, the VAE
  baseline, their ConvLSTMs and 3x3 convs) has no convolution in another order (plain autodiff
  of lax convolutions has, see tests/common/test_conv.py)."""
  c = configs.get_config('smoke')
  assert c.conv_impl == 'auto'
  nets, _, init_state = train.make_init(c)
  params = init_state(jax.random.PRNGKey(0)).params
  batch = train.make_task(c).train_batch(0)
  grad = jax.grad(lambda p, b, k: losses.loss_fn(p, nets, c, b, k), has_aux=True)
  hlo = jax.jit(grad).lower(params, batch, jax.random.PRNGKey(1)).compile().as_text()
  orders = {line.split('dim_labels=')[1].split(',')[0] for line in hlo.splitlines()
            if ' convolution(' in line}
  assert orders == {'b01f_01io->b01f'}
