"""The LSTM video models and their losses/metrics, against hand computations and independent code."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import unsup_video as configs
from unsup_video import losses
from unsup_video import models
from unsup_video import train

H = 16   # a small canvas keeps every test fast


def _model(**kw):
  kw = {'hidden': 8, 'frame_size': H, 'init_scale': 0.3, **kw}
  return models.VideoLSTM(**kw)


def _params(model, seed=0):
  return model.init(jax.random.PRNGKey(seed), jnp.zeros((1, H, H)))


def _frames(b=2, t=6, seed=1):
  return jax.random.uniform(jax.random.PRNGKey(seed), (b, t, H, H))


# --------------------------------------------------------------------------
# Targets and inputs
# --------------------------------------------------------------------------

def test_targets_reverse_the_input_and_split_off_the_future():
  frames = jnp.arange(6.0)[None, :, None, None] * jnp.ones((1, 6, 2, 2))
  t = models.targets(frames, 4)
  np.testing.assert_array_equal(t['recon'][0, :, 0, 0], [3, 2, 1, 0])
  np.testing.assert_array_equal(t['future'][0, :, 0, 0], [4, 5])


def test_shift_in_is_zeros_then_the_previous_targets():
  tgt = jnp.arange(1.0, 4.0)[None, :, None, None] * jnp.ones((1, 3, 2, 2))
  np.testing.assert_array_equal(models.shift_in(tgt)[0, :, 0, 0], [0, 1, 2])


@pytest.mark.parametrize('layers', [1, 2])
def test_lstm_matches_numpy(layers):
  """The hoisted encoder (projection then scan, layer by layer) against a per-step numpy LSTM."""
  model = _model(layers=layers, mode='future')
  params = _params(model)
  frames = _frames(b=2, t=4)
  carries = models.encode(model, params, frames)
  p = jax.tree.map(np.asarray, params['params'])
  sig = lambda a: 1 / (1 + np.exp(-a))
  x = np.asarray(frames).reshape(2, 4, -1).astype(np.float64)
  for l in range(layers):
    w = p[f'enc_{l}']
    c = h = np.zeros((2, 8))
    hs = []
    for t in range(4):
      g = x[:, t] @ w['wx']['kernel'] + h @ w['wh']['kernel'] + w['wh']['bias']
      i, f, gg, o = np.split(g, 4, -1)
      c = sig(f) * c + sig(i) * np.tanh(gg)
      h = sig(o) * np.tanh(c)
      hs.append(h)
    x = np.stack(hs, 1)
    np.testing.assert_allclose(carries[l][0], c, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(carries[l][1], h, rtol=1e-4, atol=1e-5)


def test_forget_bias_and_uniform_init():
  p = _params(_model(init_scale=0.01, forget_bias=1.0))['params']
  b = np.asarray(p['enc_0']['wh']['bias'])
  np.testing.assert_array_equal(b, np.r_[np.zeros(8), np.ones(8), np.zeros(16)])
  k = np.asarray(p['enc_0']['wx']['kernel'])
  assert np.abs(k).max() <= 0.01 and k.std() > 0.004   # U(-0.01, 0.01): std 0.0058


def test_teacher_forced_output_depends_only_on_earlier_targets():
  """Logits at output step k see the targets before k (conditional) or none (unconditioned)."""
  frames = _frames(b=1, t=8)
  for conditional in (True, False):
    model = _model(conditional=conditional)
    params = _params(model)
    carries = models.encode(model, params, frames[:, :4])
    tgt = models.targets(frames, 4)['future']
    jac = jax.jacobian(lambda y: models.decode(model, params, 'future', carries, y).sum((2, 3)))(
        tgt)   # (1, T, 1, T, H, W): d logits_k / d target_j
    dep = np.abs(np.asarray(jac)).sum((4, 5))[0, :, 0, :] > 0   # (k, j)
    expected = np.tril(np.ones((4, 4), bool), -1) if conditional else np.zeros((4, 4), bool)
    np.testing.assert_array_equal(dep, expected)


def test_unconditioned_branches_have_no_input_weights():
  p = _params(_model(conditional=False, layers=2))['params']
  for branch in ('recon', 'future'):
    assert 'wx' not in p[f'stacks_{branch}_0'] and 'wx' in p[f'stacks_{branch}_1']
  assert 'wx' in p['enc_0']
  cond = _params(_model(conditional=True))['params']
  assert 'wx' in cond['stacks_recon_0'] and 'wx' in cond['stacks_future_0']


@pytest.mark.parametrize('activation', ['sigmoid', 'linear'])
def test_free_run_feeds_back_its_own_output(activation):
  """Free-running logits equal teacher forcing on targets that are the model's own outputs."""
  model = _model(layers=2)
  params = _params(model)
  frames = _frames(b=2, t=7)
  free = models.forward(model, params, frames, 4, activation, teacher=False)
  carries = models.encode(model, params, frames[:, :4])
  for branch, logits in free.items():
    own = models.activate(activation, logits)
    again = models.decode(model, params, branch, carries, own)
    np.testing.assert_allclose(again, logits, rtol=1e-5, atol=1e-5)
  # ... and differ from teacher forcing on the truth.
  teacher = models.forward(model, params, frames, 4, activation, teacher=True)
  assert not np.allclose(teacher['future'], free['future'], atol=1e-3)
  np.testing.assert_allclose(teacher['future'][:, 0], free['future'][:, 0], atol=1e-6)


def test_unconditioned_free_run_equals_teacher_forcing():
  model = _model(conditional=False)
  params = _params(model)
  frames = _frames(t=7)
  a = models.forward(model, params, frames, 4, teacher=True)
  b = models.forward(model, params, frames, 4, teacher=False)
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-6)


def test_modes_have_their_branches_and_shapes():
  frames = _frames(t=7)
  for mode, branches in (('composite', {'recon', 'future'}), ('future', {'future'}),
                         ('autoencoder', {'recon'})):
    model = _model(mode=mode)
    out = models.forward(model, _params(model), frames, 4)
    assert set(out) == branches
    if 'recon' in out:
      assert out['recon'].shape == (2, 4, H, H)
    if 'future' in out:
      assert out['future'].shape == (2, 3, H, H)


def test_conv_variant_shapes_and_gradients():
  model = _model(kind='conv', conv_channels=(4, 8), conv_impl='matmul')
  params = _params(model)
  assert params['params']['enc_0']['wx']['kernel'].shape == (4 * 4 * 8, 32)
  frames = _frames(t=6)
  g = jax.grad(lambda p: sum(v.sum() for v in models.forward(model, p, frames, 3).values()))(
      params)
  assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(g))
  assert float(jnp.abs(g['params']['frame_encoder']['Conv_0']['kernel']).sum()) > 0


def test_bfloat16_compute_stays_close_to_float32():
  frames = _frames(t=6)
  p = _params(_model())
  f32 = models.forward(_model(), p, frames, 3)
  bf16 = models.forward(_model(dtype=jnp.bfloat16), p, frames, 3)
  for k in f32:
    assert bf16[k].dtype == jnp.float32
    np.testing.assert_allclose(bf16[k], f32[k], atol=0.05)


# --------------------------------------------------------------------------
# Losses and metrics by hand
# --------------------------------------------------------------------------

def test_bce_per_frame_by_hand():
  logits = jnp.array([[[[0.0, 2.0], [-1.0, 3.0]]]])      # (1, 1, 2, 2)
  target = jnp.array([[[[1.0, 0.0], [0.5, 1.0]]]])
  p = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0, 3.0])))
  y = np.array([1.0, 0.0, 0.5, 1.0])
  hand = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum()
  assert float(losses.frame_loss('bce', logits, target, 'sigmoid')[0, 0]) == pytest.approx(
      hand, rel=1e-6)
  assert float(losses.cross_entropy(logits, target, 'sigmoid', 'unit')[0, 0]) == pytest.approx(
      hand, rel=1e-6)


def test_mse_per_frame_by_hand_in_both_ranges():
  logits = jnp.array([[[[0.5, -0.2], [1.5, 0.0]]]])
  target = jnp.array([[[[1.0, 0.0], [1.0, 0.0]]]])
  # linear output: (0.5^2 + 0.2^2 + 0.5^2 + 0) = 0.54
  assert float(losses.frame_loss('mse', logits, target, 'linear')[0, 0]) == pytest.approx(0.54)
  # tanh output on (-1, 1) data, scored in (0, 1) units after clipping to [0, 1].
  signed = losses.to_range(target, 'signed')
  np.testing.assert_array_equal(signed[0, 0], [[1, -1], [1, -1]])
  pred = (np.tanh([0.5, -0.2, 1.5, 0.0]) + 1) / 2
  hand = ((pred - np.array([1, 0, 1, 0]))**2).sum()
  pred01 = losses.unit_prediction(logits, 'tanh', 'signed')
  assert float(losses.squared_error(pred01, target)[0, 0]) == pytest.approx(hand, rel=1e-5)
  train_loss = np.sum((np.tanh([0.5, -0.2, 1.5, 0.0]) - np.array([1, -1, 1, -1]))**2)
  assert float(losses.frame_loss('mse', logits, signed, 'tanh')[0, 0]) == pytest.approx(
      train_loss, rel=1e-5)


def test_cross_entropy_of_non_sigmoid_outputs_is_clipped():
  logits = jnp.array([[[[1.2, -0.1], [0.25, 0.0]]]])    # linear output on (0, 1) data
  target = jnp.array([[[[1.0, 0.0], [1.0, 1.0]]]])
  p = np.clip([1.2, -0.1, 0.25, 0.0], losses.PROB_EPS, 1 - losses.PROB_EPS)
  y = np.array([1.0, 0.0, 1.0, 1.0])
  hand = -(y * np.log(p) + (1 - y) * np.log1p(-p)).sum()
  got = float(losses.cross_entropy(logits, target, 'linear', 'unit')[0, 0])
  assert got == pytest.approx(hand, rel=1e-5)


def test_train_loss_sums_weighted_branches():
  config = configs.get_config('smoke')
  config.data.canvas = H
  config.loss.recon_weight = 0.25
  model = train.make_model(config)
  params = _params(model)
  frames = _frames(b=2, t=8)
  total, terms = train.loss_fn(params, model, config, frames)
  assert float(total) == pytest.approx(0.25 * float(terms['recon_loss']) +
                                       float(terms['future_loss']), rel=1e-6)
  logits = models.forward(model, params, frames, 4)
  hand = losses.frame_loss('bce', logits['future'], frames[:, 4:], 'sigmoid').mean()
  assert float(terms['future_loss']) == pytest.approx(float(hand), rel=1e-6)


def _scan_stack(model, params, branch, x, carries, length):
  """run_stack by plain autodiff: each layer's recur scanned step by step."""
  finals = []
  for l, carry in enumerate(carries):
    gx = None if x is None else jnp.swapaxes(
        model.apply(params, branch, l, x, method=models.VideoLSTM.project), 0, 1)
    step = lambda c, g, l=l: model.apply(params, branch, l, c, g, method=models.VideoLSTM.recur)
    carry, hs = jax.lax.scan(step, carry, gx, length=length)
    finals.append(carry)
    x = jnp.swapaxes(hs, 0, 1)
  return finals, x


@pytest.mark.parametrize('conditional', [True, False])
def test_hand_written_recurrence_gradient_equals_autodiff(conditional, monkeypatch):
  model = _model(layers=2, conditional=conditional)
  params = _params(model)
  frames = _frames(b=3, t=7)

  def loss(p):
    out = models.forward(model, p, frames, 4)
    return sum(jnp.sum(jnp.sin(v)) for v in out.values())

  fast = jax.grad(loss)(params)
  monkeypatch.setattr(models, 'run_stack', _scan_stack)
  slow = jax.grad(loss)(params)
  assert jax.tree.structure(fast) == jax.tree.structure(slow)
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(slow)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
  assert float(loss(params)) != 0
