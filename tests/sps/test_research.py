"""The research switches of SPS: many seeds in one step, prior variants, stop-gradients,
time reversal, init_from embedding, the collapse detector and the sweep's parsing."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from common import config as cfg
from configs import sps as sps_configs
from sps import evaluation
from sps import losses
from sps import metrics as sps_metrics
from sps import sweep
from sps import train
from sps.models import SPS
from tests import helpers


def smoke(**overrides):
  return helpers.set_fields(sps_configs.get_config('smoke'), overrides)


@pytest.fixture(scope='module')
def two_seed_task():
  config = smoke(num_seeds=2)
  return config, train.make_task(config)


def test_seeds_are_stacked_and_distinct(two_seed_task):
  _, task = two_seed_task
  state = task.init(jax.random.PRNGKey(0))
  assert state.step.shape == (2,)
  k = state.params['params']['encoder']['mu']['kernel']
  assert k.shape[0] == 2 and not np.allclose(k[0], k[1])


def test_seed0_of_a_two_seed_step_equals_a_one_seed_step(two_seed_task):
  config, task = two_seed_task
  one = train.make_train_step(smoke(), *train.make_init(smoke())[:2])
  state = task.init(jax.random.PRNGKey(0))
  key, batch = jax.random.PRNGKey(3), task.train_batch(0)
  new, m = jax.jit(task.train_step)(state, batch, key)
  seed0 = jax.tree.map(lambda a: a[:1], state)
  new0, m0 = jax.jit(one)(seed0, batch, key)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[:1], b, rtol=2e-5, atol=1e-6),
               new.params, new0.params)
  assert float(m['skipped_seeds']) == 0 and float(m0['skipped_seeds']) == 0


def test_a_non_finite_seed_is_skipped_and_the_others_step(two_seed_task):
  _, task = two_seed_task
  state = task.init(jax.random.PRNGKey(0))
  bad = jax.tree.map(lambda a: a.at[1].set(jnp.nan) if a.dtype == jnp.float32 else a,
                     state.params)
  state = state.replace(params=bad)
  new, m = jax.jit(task.train_step)(state, task.train_batch(0), jax.random.PRNGKey(0))
  assert float(m['skipped_seeds']) == 1 and np.isfinite(float(m['loss']))
  k_old = state.params['params']['encoder']['mu']['kernel']
  k_new = new.params['params']['encoder']['mu']['kernel']
  assert not np.allclose(k_new[0], k_old[0])           # seed 0 stepped
  assert np.all(np.isnan(k_new[1]))                    # seed 1 kept its (bad) params
  assert new.step.tolist() == [1, 1]


def test_summary_medians_success_rate_and_collapse_detector(capsys):
  config = smoke()
  config.collapse.check_step, config.collapse.max_ratio = 100, 0.5
  per_seed = {'linear_projection_mse': np.array([0.01, 0.02, 0.5, 0.04]),
              'self_recon_ratio': np.array([0.2, 0.3, 0.9, 0.45]),
              'self_recon': np.array([1.0, 2.0, 3.0, 4.0])}
  out = evaluation.summarize(per_seed, 100, config)
  assert out['success_rate'] == 0.5                     # 0.01 and 0.02 are below 0.03
  assert out['linear_projection_mse'] == pytest.approx(0.03)   # median of 4 values
  assert out['self_recon'] == 2.5
  assert out['collapsed_seeds'] == 1 and 'seed(s) [2]' in capsys.readouterr().out
  assert out['linear_projection_mse/seed2'] == 0.5
  assert evaluation.summarize(per_seed, 99, config)['collapsed_seeds'] == 0   # too early to tell
  assert evaluation.collapsed_seeds([0.6, 0.7], 5, ml_collections.ConfigDict(
      dict(check_step=0, max_ratio=0.65))) == [1]


def test_mean_frame_baseline_is_the_loss_of_drawing_the_mean():
  frames = np.random.default_rng(0).random((3, 4, 2, 2, 1)).astype(np.float32)
  for kind in ('mse', 'mse_linear'):
    base = float(losses.reconstruction(evaluation.mean_frame_logits(frames, kind), frames, kind))
    np.testing.assert_allclose(base, np.mean((frames - frames.mean((0, 1))) ** 2), rtol=1e-3)


def test_pitch_r2_per_timbre():
  rng = np.random.default_rng(0)
  pitch = rng.integers(48, 80, (6, 15, 1)).astype(np.float32)
  timbre = np.array([0, 0, 1, 1, 2, 2])
  offset = np.array([0.0, 5.0, -3.0])[timbre][:, None, None]
  mu = np.stack([0.1 * pitch + offset,                            # linear within each timbre
                 rng.normal(size=pitch.shape)])                   # unrelated to pitch
  r2 = evaluation.Evaluator.pitch_r2(mu, {'positions': pitch, 'timbre': timbre})
  assert r2[0] == pytest.approx(1.0) and abs(r2[1]) < 0.2
  assert sps_metrics.r2(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0])) == pytest.approx(
      1 - (1 / 6) / (114 / 9))   # residuals 1/6, -1/3, 1/6; deviations from 13/3: -7/3, -1/3, 8/3


@pytest.mark.parametrize('init,sign', [('identity', 1.0), ('negative_identity', -1.0)])
def test_prior_init_starts_near_plus_or_minus_the_identity(init, sign):
  model = SPS(z_dim=3, prior_init=init, prior_init_noise=1e-3)
  z = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 3))
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 6, 32, 32, 3)))
  pred = model.apply(params, z, jnp.ones((2, 6), bool), method=SPS.predict)
  np.testing.assert_allclose(pred, sign * z, atol=0.02)
  default = SPS(z_dim=3)
  p0 = default.init(jax.random.PRNGKey(0), jnp.zeros((1, 6, 32, 32, 3)))
  assert 'skip' not in p0['params']['prior']['step']
  assert not np.allclose(default.apply(p0, z, jnp.ones((2, 6), bool), method=SPS.predict),
                         sign * z, atol=0.1)


def test_prior_dropout_acts_on_the_hidden_state_only_in_training():
  model = SPS(z_dim=3, prior_dropout=0.5)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 6, 32, 32, 3)))
  z, teacher = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 3)), jnp.ones((2, 6), bool)
  run = lambda det, k: model.apply(params, z, teacher, det, method=SPS.predict,
                                   rngs={'dropout': jax.random.PRNGKey(k)})
  np.testing.assert_array_equal(run(True, 0), run(True, 1))
  assert not np.allclose(run(False, 0), run(False, 1))
  # The first step's hidden state is zero, so dropping it changes nothing there.
  np.testing.assert_allclose(run(False, 0)[:, 0], run(True, 0)[:, 0], rtol=1e-6)
  no_drop = SPS(z_dim=3)
  np.testing.assert_array_equal(
      no_drop.apply(params, z, teacher, False, method=SPS.predict,
                    rngs={'dropout': jax.random.PRNGKey(0)}), run(True, 0))


@pytest.mark.parametrize('target,inp,encoder_gets_gradient', [
    (True, True, False), (True, False, True), (False, True, True)])
def test_z_loss_stop_gradients(target, inp, encoder_gets_gradient):
  config = smoke(**{'loss.z_stop_grad_target': target, 'loss.z_stop_grad_input': inp,
                    'loss.self_recon': 0.0, 'loss.image_pred': 0.0, 'loss.kl': 0.0,
                    'loss.z_pred': 1.0, 'model.vae': False, 'symmetry.k': 0})
  model, _, init = train.make_init(config)
  params = train.seed_params(init(jax.random.PRNGKey(0)).params, 0)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 8, 32, 32, 3))
  loss = lambda p: losses.loss_fn(p, model, config, x, jax.random.PRNGKey(2), 1.0)[0]
  grads = jax.jit(jax.grad(loss))(params)
  enc = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(grads['params']['encoder']))
  prior = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(grads['params']['prior']))
  assert prior > 0
  assert (enc > 0) == encoder_gets_gradient


def test_reverse_time_by_hand():
  x = jnp.arange(4 * 3, dtype=jnp.float32).reshape(4, 3, 1)
  np.testing.assert_array_equal(losses.reverse_time(jax.random.PRNGKey(0), x, 0.0), x)
  np.testing.assert_array_equal(losses.reverse_time(jax.random.PRNGKey(0), x, 1.0), x[:, ::-1])
  out = losses.reverse_time(jax.random.PRNGKey(5), jnp.tile(x, (50, 1, 1)), 0.5)
  flipped = [bool(np.all(o == o0[::-1])) for o, o0 in zip(out, jnp.tile(x, (50, 1, 1)))]
  assert len(flipped) == 200 and 60 < sum(flipped) < 140
  for o, o0, f in zip(out, jnp.tile(x, (50, 1, 1)), flipped):
    np.testing.assert_array_equal(o, o0[::-1] if f else o0)


def test_embed_writes_the_leading_block_and_refuses_to_shrink():
  src = {'a': jnp.ones((2, 3)), 'b': jnp.full((3,), 2.0)}
  fresh = {'a': jnp.zeros((2, 5)), 'b': jnp.zeros((3,))}
  out = train.embed(src, fresh)
  np.testing.assert_array_equal(out['a'], [[1, 1, 1, 0, 0]] * 2)
  np.testing.assert_array_equal(out['b'], [2, 2, 2])
  with pytest.raises(cfg.ConfigError, match='does not fit'):
    train.embed(fresh, src)
  with pytest.raises(cfg.ConfigError, match='different architecture'):
    train.embed({'a': src['a']}, fresh)


@pytest.mark.parametrize('field,value,message', [
    ('num_seeds', 0, 'must be > 0'),
    ('model.prior_init', 'eye', "allowed values are 'default', 'identity', 'negative_identity'"),
    ('model.prior_dropout', 1.0, 'must be in [0.0, 0.95]'),
    ('data.reverse_prob', 1.5, 'must be in [0.0, 1.0]'),
    ('loss.kind', 'l1', "allowed values are 'mse', 'bce', 'mse_linear'"),
    ('init_from', '/nonexistent', 'must be the workdir of an SPS run'),
    ('eval.success_threshold', 0.0, 'must be > 0'),
])
def test_validate_names_the_bad_switch(field, value, message):
  with pytest.raises(cfg.ConfigError, match=f'config.{field}=.* is invalid: .*'):
    train.validate(smoke(**{field: value}), num_devices=1)
  with pytest.raises(cfg.ConfigError) as e:
    train.validate(smoke(**{field: value}), num_devices=1)
  assert message in str(e.value)


def test_music_config_checks():
  c = sps_configs.get_config('music')
  train.validate(c, num_devices=1)
  c.model.arch = 'conv'
  with pytest.raises(cfg.ConfigError, match='model.arch=.conv. is invalid: music'):
    train.validate(c, num_devices=1)


def test_sweep_values_take_the_field_type():
  c = sps_configs.get_config('bouncing_ball')
  sweeps = sweep.parse_sweeps(c, ['symmetry.k=0,1,4', 'model.vae=true,False',
                                  'symmetry.spec=T:0,2 R:0,2;T:0,1 R:0,1', 'optim.lr=1e-3,3e-4',
                                  'model.enc_channels=(8,16,32);(16,32,64)'])
  assert sweeps == [('symmetry.k', [0, 1, 4]), ('model.vae', [True, False]),
                    ('symmetry.spec', ['T:0,2 R:0,2', 'T:0,1 R:0,1']),
                    ('optim.lr', [1e-3, 3e-4]),
                    ('model.enc_channels', [(8, 16, 32), (16, 32, 64)])]
  assert all(isinstance(v, float) for v in sweeps[3][1])
  for bad, msg in [('symmetry.k=a', "'a' is not a int"), ('nofield=1', 'no field'),
                   ('symmetry.k', 'write field=v1'), ('model.vae=maybe', 'is not a bool')]:
    with pytest.raises(cfg.ConfigError, match=msg):
      sweep.parse_sweeps(c, [bad])


def test_sweep_groups_are_the_product_with_readable_names():
  c = sps_configs.get_config('bouncing_ball')
  gs = sweep.groups(c, sweep.parse_sweeps(c, ['symmetry.k=0,4', 'data.num_train=64,256']))
  assert [n for n, _ in gs] == ['symmetry.k=0 data.num_train=64', 'symmetry.k=0 data.num_train=256',
                                'symmetry.k=4 data.num_train=64', 'symmetry.k=4 data.num_train=256']
  assert [(g.symmetry.k, g.data.num_train) for _, g in gs] == [(0, 64), (0, 256), (4, 64), (4, 256)]
  assert c.symmetry.k == 1                                  # the base config is untouched
  assert sweep.folder_name('symmetry.spec=T:0,2 R:0,2') == 'symmetry.spec=T_0,2_R_0,2'


def test_sweep_table_by_hand():
  results = {'a': {'values': [0.01, 0.02, 0.5, 0.04],
                   'per_seed': {'linear_projection_mse': [0.01, 0.02, 0.5, 0.04]},
                   'collapsed_seeds': 1, 'escape_steps': [300, None, 100, 200]}}
  md = sweep.table(results, 'linear_projection_mse', 0.03).splitlines()
  assert md[2] == ('| a | 4 | 50% | 0.03 | 0.0175 / 0.155 | 0.01 | 1 | '
                   '3/4, median step 200, last 300 |')
  md = sweep.table(results, 'pitch_r2_heldout', 0.03).splitlines()
  assert md[2].endswith('| 0.5 | 1 | 3/4, median step 200, last 300 |')   # best R²: the largest
