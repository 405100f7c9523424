"""The released recipe's switches and the plateau escape: scoring every one-step prediction,
the SRS consistency term, per-step lr decay, the decoder's linear last Dense, the logvar head's
init, the prediction warm-up, and the sweep's escape-step read-out."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import sps as sps_configs
from sps import losses
from sps import sweep
from sps import train
from sps.models import SPS, Decoder, Encoder
from tests import helpers


def smoke(**overrides):
  return helpers.set_fields(sps_configs.get_config('smoke'), overrides)


def persist(z_in, teacher, key):
  """A toy prior that predicts z[t+1] = z[t] (its input)."""
  del teacher, key
  return z_in


@pytest.mark.parametrize('score_all', [False, True])
def test_score_all_scores_every_one_step_prediction(score_all):
  z = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 2))
  x = jax.random.uniform(jax.random.PRNGKey(1), (3, 7, 2, 2, 1))
  decode = lambda zz: jnp.zeros((zz.shape[0], 2, 2, 1))
  context = 3
  z_loss, img_loss, z_hat = losses.prediction_losses(
      persist, decode, z, x, None, jax.random.PRNGKey(2), 1.0, context, kind='mse_linear',
      score_all=score_all)
  first = 1 if score_all else context
  assert z_hat.shape == (3, 7 - first, 2)
  # by hand: the persistence prior's error is the step z[t+1] - z[t] over the scored steps
  np.testing.assert_allclose(z_loss, np.mean((z[:, first:] - z[:, first - 1:-1]) ** 2), rtol=1e-6)
  np.testing.assert_allclose(img_loss, np.mean(np.asarray(x[:, first:]) ** 2), rtol=1e-6)


def _loss_terms(config, seed=0, **kw):
  model, _, init = train.make_init(config)
  params = train.seed_params(init(jax.random.PRNGKey(seed)).params, 0)
  x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 32, 32, 3))
  return jax.jit(lambda p: losses.loss_fn(p, model, config, x, jax.random.PRNGKey(2), 0.5,
                                          **kw))(params)


def test_srs_is_zero_for_identity_transforms_and_adds_to_the_loss():
  # identity transforms: the symmetry path sees the same sequences and the same teacher mask
  same = smoke(**{'loss.srs': 2.0, 'symmetry.p_identity': 1.0})
  _, terms = _loss_terms(same)
  assert float(terms['srs/symmetry']) < 1e-12
  np.testing.assert_allclose(terms['image_pred/symmetry'], terms['image_pred/identity'], rtol=1e-6)
  moved = smoke(**{'loss.srs': 2.0, 'symmetry.p_identity': 0.0})
  total, terms = _loss_terms(moved)
  assert float(terms['srs/symmetry']) > 1e-6
  off_total, off_terms = _loss_terms(smoke(**{'loss.srs': 0.0, 'symmetry.p_identity': 0.0}))
  assert 'srs/symmetry' not in off_terms
  np.testing.assert_allclose(total, off_total + 2.0 * terms['srs/symmetry'], rtol=1e-5)


def test_srs_has_one_term_per_group_path():
  _, terms = _loss_terms(smoke(**{'loss.srs': 1.0, 'symmetry.mode': 'each', 'symmetry.k': 2}))
  assert {'srs/T:0,2', 'srs/R:0,2'} <= set(terms)


def test_lr_decays_by_the_factor_every_step():
  # Adam on a constant gradient moves each step by exactly its learning rate
  config = smoke(**{'optim.lr': 0.1, 'optim.lr_decay': 0.5, 'optim.grad_clip': 0.0})
  tx = train.make_optimizer(config)
  params = jnp.zeros(3)
  state = tx.init(params)
  for n in range(4):
    updates, state = tx.update(jnp.ones(3), state, params)
    np.testing.assert_allclose(updates, -0.1 * 0.5 ** n * np.ones(3), rtol=1e-4)
  const = train.make_optimizer(smoke(**{'optim.lr': 0.1, 'optim.grad_clip': 0.0}))
  s = const.init(params)
  for _ in range(3):
    updates, s = const.update(jnp.ones(3), s, params)
  np.testing.assert_allclose(updates, -0.1 * np.ones(3), rtol=1e-4)


def test_lr_warms_up_linearly_then_decays():
  config = smoke(**{'optim.lr': 0.1, 'optim.warmup_steps': 4, 'optim.lr_decay': 0.5,
                    'optim.grad_clip': 0.0})
  tx = train.make_optimizer(config)
  params = jnp.zeros(3)
  state = tx.init(params)
  expected = [0.0, 0.025, 0.05, 0.075, 0.1, 0.05, 0.025]   # steps 0..6, by hand
  for lr in expected:
    updates, state = tx.update(jnp.ones(3), state, params)
    np.testing.assert_allclose(updates, -lr * np.ones(3), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize('last_relu', [True, False])
def test_decoder_last_dense_is_linear_unless_asked(last_relu):
  dec = Decoder(hidden=(4,), channels=(8, 4), base=4, last_relu=last_relu, conv_impl='lax')
  params = dec.init(jax.random.PRNGKey(0), jnp.zeros((2, 3)))
  # push the last Dense's outputs far below zero: a ReLU then hides z entirely
  last = params['params']['Dense_1']
  params['params']['Dense_1'] = {'kernel': last['kernel'], 'bias': jnp.full_like(last['bias'], -1e3)}
  z = jax.random.normal(jax.random.PRNGKey(1), (2, 3))
  out = dec.apply(params, z)
  assert out.shape == (2, 16, 16, 3)
  same = np.allclose(out[0], out[1])
  assert same == last_relu


def test_logvar_init_sets_the_starting_posterior_noise():
  config = smoke(**{'model.logvar_init': -6.0})
  model, _, init = train.make_init(config)
  params = train.seed_params(init(jax.random.PRNGKey(0)).params, 0)
  np.testing.assert_array_equal(params['params']['encoder']['logvar']['bias'], -6.0)
  # a blank frame reaches the heads as zeros (conv biases start at 0): logvar is the bias
  mu, logvar = model.apply(params, jnp.zeros((1, 32, 32, 3)), method=SPS.encode)
  np.testing.assert_allclose(logvar, -6.0, atol=1e-6)
  flax_default = smoke(**{'model.logvar_init': 0.0})
  params = train.seed_params(train.make_init(flax_default)[2](jax.random.PRNGKey(0)).params, 0)
  np.testing.assert_array_equal(params['params']['encoder']['logvar']['bias'], 0.0)


def test_prediction_warmup_ramps_the_prediction_terms():
  np.testing.assert_allclose([float(losses.pred_scale(s, 100)) for s in (0, 25, 100, 400)],
                             [0.0, 0.25, 1.0, 1.0])
  assert float(losses.pred_scale(0, 0)) == 1.0
  config = smoke(**{'symmetry.k': 0, 'loss.pred_warmup': 0})
  total0, terms = _loss_terms(config, pred_weight=0.0)
  w = config.loss
  np.testing.assert_allclose(total0, w.self_recon * terms['self_recon'] + w.kl * terms['kl'],
                             rtol=1e-6)
  total1, _ = _loss_terms(config, pred_weight=1.0)
  np.testing.assert_allclose(total1, total0 + w.z_pred * terms['z_pred/identity'] +
                             w.image_pred * terms['image_pred/identity'], rtol=1e-5)


def test_train_step_reports_the_warmup_weight():
  config = smoke(**{'loss.pred_warmup': 4})
  model, tx, init = train.make_init(config)
  step = jax.jit(train.make_train_step(config, model, tx))
  state = init(jax.random.PRNGKey(0))
  frames = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 32, 32, 3))
  weights = []
  for i in range(3):
    state, m = step(state, {'frames': frames}, jax.random.PRNGKey(i))
    weights.append(float(m['pred_weight']))
  assert weights == [0.0, 0.25, 0.5]


def test_escape_steps_by_hand():
  records = [{'step': 100, 'self_recon_ratio/seed0': 0.9, 'self_recon_ratio/seed1': 0.4},
             {'step': 300, 'self_recon_ratio/seed0': 0.3, 'self_recon_ratio/seed1': 0.2},
             {'step': 200, 'self_recon_ratio/seed0': 0.6, 'self_recon_ratio/seed1': 0.45}]
  assert sweep.escape_steps(records, 2, 0.5) == [300, 100]
  assert sweep.escape_steps(records, 2, 0.1) == [None, None]
  assert sweep.escape_steps([{'step': 5, 'self_recon_ratio': 0.2}], 1, 0.5) == [5]
  assert sweep.escape_summary([300, 100, None]) == '2/3, median step 200, last 300'
  assert sweep.escape_summary([None]) == '0/1'


@pytest.mark.parametrize('variant', ['bouncing_ball_cpu', 'two_body_cpu'])
def test_cpu_variants_validate(variant):
  c = sps_configs.get_config(variant)
  train.validate(c, num_devices=1)
  assert c.num_seeds == 8
  # the measured recipe: sigmoid teacher forcing, a leaky decoder, the prior learning from step 0
  assert (c.schedule.kind, c.model.dec_leak, c.loss.warmup_prior_first) == ('sigmoid', 0.1, True)


def test_dec_mean_init_starts_the_decoder_at_the_mean_frame():
  config = smoke(**{'model.dec_mean_init': True, 'model.dec_zero_last': True})
  task = train.make_task(config)
  params = train.seed_params(task.init(jax.random.PRNGKey(0)).params, 0)
  mean = np.clip(train.load_data(config, 'train')['frames'].mean((0, 1)), 1e-4, 1 - 1e-4)
  bias = params['params']['decoder']['pixel_bias']
  assert bias.shape == (32, 32, 3)
  np.testing.assert_allclose(jax.nn.sigmoid(bias), mean, atol=1e-5)
  # the last transposed conv starts at zero: every z decodes to the mean frame
  model = train.make_model(config)
  out = model.apply(params, jax.random.normal(jax.random.PRNGKey(1), (2, 3)), method=SPS.decode)
  np.testing.assert_allclose(jax.nn.sigmoid(out), np.broadcast_to(mean, (2, 32, 32, 3)), atol=1e-5)
  # without dec_zero_last the convolutions still draw on top of the mean
  config.model.dec_zero_last = False
  params = train.seed_params(train.make_task(config).init(jax.random.PRNGKey(0)).params, 0)
  out = model.apply(params, jax.random.normal(jax.random.PRNGKey(1), (2, 3)), method=SPS.decode)
  assert np.abs(np.asarray(jax.nn.sigmoid(out)) - mean).max() > 1e-3
  with pytest.raises(Exception, match='dec_mean_init'):
    c = sps_configs.get_config('music')
    c.model.dec_mean_init = True
    train.validate(c, num_devices=1)


def test_mu_data_init_standardizes_mu_over_the_training_frames():
  config = smoke(**{'model.mu_data_init': True, 'num_seeds': 2})
  params = train.make_task(config).init(jax.random.PRNGKey(0)).params
  frames = train.load_data(config, 'train')['frames']
  flat = frames.reshape((-1,) + frames.shape[2:])
  model = train.make_model(config)
  for i in range(2):
    mu, _ = model.apply(train.seed_params(params, i), flat, method=SPS.encode)
    np.testing.assert_allclose(mu.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(mu.std(0), 1.0, rtol=1e-4)


@pytest.mark.parametrize('leak', [0.0, 0.1])
def test_encoder_leak_keeps_switched_off_units_trainable(leak):
  enc = Encoder(3, channels=(4, 8), conv_impl='lax', leak=leak)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3))
  params = enc.init(jax.random.PRNGKey(1), x)
  # switch every unit of the first layer off, as Adam does to a collapsing encoder
  first = params['params']['Conv_0']
  params['params']['Conv_0'] = {**first, 'bias': jnp.full_like(first['bias'], -1e2)}
  mu_of = lambda p: enc.apply(p, x)[0]
  mu = mu_of(params)
  grad = jax.grad(lambda p: jnp.sum(mu_of(p)))(params)
  first_grad = float(jnp.sum(jnp.abs(grad['params']['Conv_0']['kernel'])))
  if leak:
    assert not np.allclose(mu[0], mu[1]) and first_grad > 0
  else:       # a dead ReLU layer: z no longer depends on the frame and nothing can revive it
    np.testing.assert_allclose(mu[0], mu[1], atol=1e-6)
    assert first_grad == 0.0


@pytest.mark.parametrize('leak', [0.0, 0.1])
def test_decoder_leak_keeps_a_dead_first_layer_trainable(leak):
  dec = Decoder(hidden=(4,), channels=(8, 4), base=4, conv_impl='lax', leak=leak)
  z = jax.random.normal(jax.random.PRNGKey(1), (2, 3))
  params = dec.init(jax.random.PRNGKey(0), z)
  # every unit of the first Dense off for every z: the collapsed seeds' decoders
  first = params['params']['Dense_0']
  params['params']['Dense_0'] = {**first, 'bias': jnp.full_like(first['bias'], -1e2)}
  out = dec.apply(params, z)
  grad = jax.grad(lambda p: jnp.sum(dec.apply(p, z) ** 2))(params)
  first_grad = float(jnp.sum(jnp.abs(grad['params']['Dense_0']['kernel'])))
  if leak:
    assert not np.allclose(out[0], out[1]) and first_grad > 0
  else:       # the output no longer depends on z, and no gradient reaches the layer
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)
    assert first_grad == 0.0


@pytest.mark.parametrize('through_decoder', [True, False])
def test_pred_decoder_grad_keeps_image_predictions_off_the_decoder(through_decoder):
  config = smoke(**{'loss.pred_decoder_grad': through_decoder, 'loss.self_recon': 0.0,
                    'loss.z_pred': 0.0, 'loss.kl': 0.0, 'loss.image_pred': 1.0,
                    'model.vae': False, 'symmetry.k': 0})
  model, _, init = train.make_init(config)
  params = train.seed_params(init(jax.random.PRNGKey(0)).params, 0)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 8, 32, 32, 3))
  grads = jax.jit(jax.grad(lambda p: losses.loss_fn(p, model, config, x, jax.random.PRNGKey(2),
                                                    1.0)[0]))(params)
  size = lambda part: sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(grads['params'][part]))
  assert size('prior') > 0 and size('encoder') > 0
  assert (size('decoder') > 0) == through_decoder


def test_warmup_prior_first_ramps_only_the_vae_side():
  config = smoke(**{'loss.warmup_prior_first': True, 'loss.self_recon': 0.0, 'loss.kl': 0.0,
                    'model.vae': False, 'symmetry.k': 0})
  model, _, init = train.make_init(config)
  params = train.seed_params(init(jax.random.PRNGKey(0)).params, 0)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 8, 32, 32, 3))
  grad_at = jax.jit(lambda w: jax.grad(lambda p: losses.loss_fn(
      p, model, config, x, jax.random.PRNGKey(2), 1.0, pred_weight=w)[0])(params))
  full, half, none = grad_at(1.0), grad_at(0.5), grad_at(0.0)
  for part in ('encoder', 'decoder'):
    jax.tree.map(lambda f, h, n: (np.testing.assert_allclose(h, 0.5 * f, rtol=1e-4, atol=1e-9),
                                  np.testing.assert_array_equal(n, 0.0)),
                 full['params'][part], half['params'][part], none['params'][part])
  jax.tree.map(lambda f, n: np.testing.assert_allclose(n, f, rtol=1e-5, atol=1e-9),
               full['params']['prior'], none['params']['prior'])
  assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(full['params']['encoder'])) > 0


def test_each_mode_gives_one_path_per_group_with_k_transforms_per_sequence():
  config = smoke(**{'symmetry.mode': 'each', 'symmetry.k': 4, 'symmetry.p_identity': 0.0,
                    'batch_size': 8})
  paths = losses.symmetry_paths(config, jax.random.PRNGKey(0), 8)
  assert [name for name, _, _ in paths] == ['T:0,2', 'R:0,2']
  for name, (rot, shift), idx in paths:
    np.testing.assert_array_equal(idx, [0, 0, 0, 0, 1, 1, 1, 1])   # batch/k sequences, k copies
    moved = shift if name.startswith('T') else rot.reshape(8, -1)
    assert len({tuple(np.round(np.asarray(m), 6)) for m in moved}) == 8   # 8 distinct transforms
