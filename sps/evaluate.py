"""Evaluate an SPS checkpoint: python -m sps.evaluate --workdir=DIR [--step=N].

Writes DIR/eval/step_<N>/metrics.json and PNGs (decoder traversal, z trajectories against
the true positions, a true-vs-predicted rollout, training curves) and prints a short table.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np

from common import cli
from common import config as cfg
from common import loop
from common import metrics as metrics_lib
from common import plotting
from sps import metrics as sps_metrics
from sps import train
from sps.models import SPS

AXES = {3: ('x', 'y (up)', 'depth'), 6: ('A.x', 'A.y', 'A.z', 'B.x', 'B.y', 'B.z')}


def traversal(model, params, mu, steps):
  """Decodes z swept over z-scores -2..2 along each dim, others at their mean: (d, steps, H, W, C)."""
  flat = mu.reshape(-1, mu.shape[-1])
  mean, std = flat.mean(0), flat.std(0)
  scores = np.linspace(-2, 2, steps)
  zs = np.repeat(mean[None, None], flat.shape[1], 0).repeat(steps, 1)   # (d, steps, d)
  for i in range(flat.shape[1]):
    zs[i, :, i] = mean[i] + scores * std[i]
  imgs = jax.nn.sigmoid(model.apply(params, jnp.asarray(zs.reshape(-1, flat.shape[1])),
                                    method=SPS.decode))
  return np.asarray(imgs).reshape(zs.shape[:2] + imgs.shape[1:]), scores


def rollout(model, params, mu, context):
  """Reconstructions and open-loop predictions (prior fed its own guesses after `context` frames)."""
  b, t, d = mu.shape
  recon = jax.nn.sigmoid(model.apply(params, jnp.asarray(mu.reshape(-1, d)), method=SPS.decode))
  teacher = jnp.broadcast_to(jnp.arange(t - 1) < context, (b, t - 1))
  z_hat = model.apply(params, jnp.asarray(mu[:, :-1]), teacher, method=SPS.predict)
  pred = jax.nn.sigmoid(model.apply(params, z_hat.reshape(-1, d), method=SPS.decode))
  shape = (b, -1) + recon.shape[1:]
  return np.asarray(recon).reshape(shape), np.asarray(pred).reshape(shape)


def write_figures(out, config, model, params, evaluator, mu):
  frames, pos = evaluator.data['frames'], evaluator.data['positions']
  n = min(config.eval.rollout_examples, len(frames))
  c = config.loss.rnn_min_context
  paths = {}

  imgs, scores = traversal(model, params, mu, config.eval.traversal_steps)
  paths['traversal'] = plotting.image_grid(
      os.path.join(out, 'decoder_traversal.png'), imgs,
      row_labels=[f'z{i}' for i in range(len(imgs))], col_labels=[f'{s:+.1f}σ' for s in scores],
      title='decoder traversal: each row sweeps one z dim (others at their mean)')

  recon, pred = rollout(model, params, mu[:n], c)
  blank = np.full_like(pred[:, :1], 0.5)
  pred = np.concatenate([np.repeat(blank, c, 1), pred[:, c - 1:]], axis=1)
  rows = np.stack([frames[:n], recon, pred], 1).reshape((3 * n,) + frames.shape[1:])
  paths['rollout'] = plotting.image_grid(
      os.path.join(out, 'rollout.png'), rows,
      row_labels=[f'{kind} #{i}' for i in range(n) for kind in ('true', 'recon', 'pred')],
      col_labels=[f't={t}' for t in range(frames.shape[1])],
      title=f'true / reconstructed / predicted by the prior alone after {c} context frames (grey)')

  mse_axis, fit, y = sps_metrics.linear_projection(mu.reshape(-1, mu.shape[-1]),
                                                   pos.reshape(-1, pos.shape[-1]))
  t = frames.shape[1]
  fit, y = fit.reshape(len(frames), t, -1), y.reshape(len(frames), t, -1)
  names = AXES.get(y.shape[-1], [f'axis{i}' for i in range(y.shape[-1])])
  fig, axes = plotting.plt.subplots(1, y.shape[-1], figsize=(3 * y.shape[-1], 2.6), squeeze=False)
  for i, ax in enumerate(axes[0]):
    for j in range(min(3, len(frames))):
      line, = ax.plot(y[j, :, i], '-', lw=1.5)
      ax.plot(fit[j, :, i], '--', color=line.get_color(), lw=1.2)
    ax.set_title(f'{names[i]}  (1-R²={mse_axis[i]:.3f})', fontsize=9)
    ax.set_xlabel('frame')
  axes[0, 0].set_ylabel('standardised position')
  fig.suptitle('true position (solid) vs best linear read-out of z (dashed)', fontsize=10, y=1.04)
  paths['trajectories'] = plotting.save(fig, os.path.join(out, 'z_trajectories.png'))

  train_log = metrics_lib.read(os.path.dirname(os.path.dirname(out)), 'train')
  eval_log = metrics_lib.read(os.path.dirname(os.path.dirname(out)), 'eval')
  if train_log:
    fig, axes = plotting.plt.subplots(1, 2, figsize=(9, 3))
    for key in ('loss', 'self_recon', 'image_pred/identity'):
      if key in train_log[0]:
        axes[0].semilogy([r['step'] for r in train_log], [r[key] for r in train_log], label=key)
    axes[0].legend(fontsize=8)
    axes[0].set_xlabel('step')
    axes[0].set_title('train losses', fontsize=9)
    ev = [r for r in eval_log if 'linear_projection_mse' in r]
    axes[1].semilogy([r['step'] for r in ev], [r['linear_projection_mse'] for r in ev], 'o-')
    axes[1].axhline(0.03, color='gray', ls=':', lw=1)
    axes[1].set_title('eval linear projection MSE (0.03 dotted)', fontsize=9)
    axes[1].set_xlabel('step')
    paths['curves'] = plotting.save(fig, os.path.join(out, 'curves.png'))
  return paths


def evaluate(workdir, step=None):
  """Restores a checkpoint with its saved config, writes metrics.json + PNGs; returns the metrics."""
  config = cfg.load(workdir)
  model, _, init_state = train.make_init(config)
  state, step = loop.restore(workdir, init_state, config.seed, step)
  evaluator = train.Evaluator(config, model)
  metrics = evaluator.metrics(state.params)
  out = os.path.join(workdir, 'eval', f'step_{step}')
  os.makedirs(out, exist_ok=True)
  mu = evaluator.encode(state.params)
  figures = write_figures(out, config, model, state.params, evaluator, mu)
  metrics_lib.report(out, workdir, f'SPS evaluation of {workdir} at step {step} on '
                     f'{len(evaluator.data["frames"])} held-out sequences', metrics, figures,
                     {'step': step})
  return metrics


if __name__ == '__main__':
  cli.run_evaluate(evaluate)
