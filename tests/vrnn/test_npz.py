"""data.source=npz from the command line, on a linear-Gaussian state-space model whose exact
log-likelihood a Kalman filter gives: the reported numbers are in the data's units."""
import json

import jax
import numpy as np
import pytest

from common import config as cfg
from common import loop
from tests import helpers
from vrnn import train

# z_1 ~ N(0, I), z_{t+1} = A z_t + N(0, Q), x_t = C z_t + OFFSET + N(0, R); x is 3-D and its
# scale is ~5, so a density left in normalised units would be ~5 nats per step too high.
A = 0.98 * np.array([[0.95, -0.25], [0.25, 0.95]])
C = np.array([[4.0, 1.0], [0.5, 3.0], [2.0, -2.0]])
Q, R, OFFSET = 0.3 * np.eye(2), 0.5 * np.eye(3), np.array([10.0, -3.0, 1.0])
N, T, NUM_EVAL = 600, 40, 100


def sample_lgssm(rng, n, t):
  z, xs = rng.normal(size=(n, 2)), []
  for _ in range(t):
    xs.append(z @ C.T + OFFSET + rng.multivariate_normal(np.zeros(3), R, size=n))
    z = z @ A.T + rng.multivariate_normal(np.zeros(2), Q, size=n)
  return np.stack(xs, 1)


def kalman_log_likelihood(x, lengths):
  """Exact log p(x_1..x_L) per sequence, by the Kalman filter's prediction errors."""
  out = np.zeros(len(x))
  for i, (seq, length) in enumerate(zip(x, lengths)):
    m, p = np.zeros(2), np.eye(2)
    for x_t in seq[:length]:
      s = C @ p @ C.T + R
      r = x_t - OFFSET - C @ m
      out[i] -= 0.5 * (r @ np.linalg.solve(s, r) + np.linalg.slogdet(2 * np.pi * s)[1])
      gain = p @ C.T @ np.linalg.inv(s)
      m, p = m + gain @ r, (np.eye(2) - gain @ C) @ p
      m, p = A @ m, A @ p @ A.T + Q
  return out


@pytest.fixture(scope='module')
def lgssm_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('npz')
  rng = np.random.default_rng(0)
  x, lengths = sample_lgssm(rng, N, T), rng.integers(T // 2, T + 1, N)
  np.savez(root / 'lgssm.npz', x=x.astype(np.float32), lengths=lengths)
  workdir = root / 'w'
  proc = helpers.run(helpers.cli(
      'vrnn.main', '--config=configs/vrnn.py:npz', f'--workdir={workdir}',
      f'--config.data.path={root / "lgssm.npz"}', f'--config.data.num_eval={NUM_EVAL}',
      '--config.num_steps=300', '--config.eval_every=150', '--config.checkpoint.every=150',
      '--config.progress_bar=False', '--config.model.h_dim=32', '--config.model.phi_x_dim=16',
      '--config.model.phi_z_dim=16', '--config.model.hidden_dim=32', '--config.model.z_dim=4',
      '--config.eval.is_samples=32', '--config.eval.num_generate=3'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  exact = kalman_log_likelihood(x[-NUM_EVAL:], lengths[-NUM_EVAL:])
  return workdir, x, lengths, exact, proc


def test_npz_trains_stores_its_normalisation_and_draws(lgssm_run):
  workdir, x, lengths, _, proc = lgssm_run
  m = json.load(open(workdir / 'eval' / 'step_300' / 'metrics.json'))
  assert m['num_sequences'] == NUM_EVAL and m['data_units'] is True
  assert m['mean_length'] == pytest.approx(lengths[-NUM_EVAL:].mean())
  assert "in the data's units" in proc.stdout
  stats = json.load(open(workdir / 'normalisation.json'))
  real = np.concatenate([s[:n] for s, n in zip(x[:-NUM_EVAL], lengths[:-NUM_EVAL])])
  np.testing.assert_allclose(stats['mean'], real.mean(0), rtol=1e-4)
  np.testing.assert_allclose(stats['std'], real.std(0), rtol=1e-4)
  for png in ('samples.png', 'reconstructions.png', 'kl_per_step.png', 'curves.png'):
    assert (workdir / 'eval' / 'step_300' / png).stat().st_size > 5000, png


def test_likelihood_is_below_the_exact_one_and_rises_with_samples(lgssm_run):
  workdir, _, _, exact, _ = lgssm_run
  config = cfg.load(str(workdir))
  model, _, init_state = train.make_init(config)
  state, _ = loop.restore(str(workdir), init_state, config.seed, None)
  evaluator = train.workdir_evaluator(config, model, str(workdir))
  ll = {k: evaluator.log_likelihood(state.params, k) for k in (1, 8, 64)}
  m = json.load(open(workdir / 'eval' / 'step_300' / 'metrics.json'))
  assert m['log_likelihood'] == pytest.approx(evaluator.log_likelihood(state.params).mean(),
                                              abs=1e-3)
  # No model beats the true density on average: E log p_model <= E log p_true. The paired
  # differences' standard error covers the held-out sample and the importance noise.
  gap = ll[64] - exact
  assert gap.mean() < 3 * gap.std() / np.sqrt(NUM_EVAL), gap.mean()
  # ...and a trained model is not far below it: a wrong Jacobian would move it by ~5 nats/step.
  steps = evaluator.data['mask'].sum(1)
  assert (gap / steps).mean() > -1.5, (gap / steps).mean()
  assert ll[1].mean() < ll[8].mean() < ll[64].mean()
  assert np.all(np.isfinite(ll[64]))


def test_npz_bad_settings_fail_in_one_line(tmp_path):
  np.save(tmp_path / 'x.npy', np.zeros((4, 5, 2), np.float32))
  for override, message in [
      ('--config.model.pen_bit=True', 'error: config.model.pen_bit=True is invalid: must be '
       'False for data.source=npz (every feature is continuous)'),
      ('--config.data.path=', "error: config.data.path='' is invalid: set it to a .npz or .npy "
       'file of (N, T, D) sequences (data.source=npz)'),
      ('--config.data.num_eval=4', 'error: config.data.num_eval=4 is invalid: the file holds 4 '
       'sequences, so it must be between 1 and 3'),
  ]:
    proc = helpers.run(helpers.cli(
        'vrnn.main', '--config=configs/vrnn.py:npz', f'--workdir={tmp_path / "w"}',
        f'--config.data.path={tmp_path / "x.npy"}', '--config.batch_size=2', override),
        timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == message
