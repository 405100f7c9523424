"""SPS pictures: the decoder traversal, a true-vs-predicted rollout, z trajectories against the
true positions, training curves, for music z against pitch and the traversal as spectra, and a
box plot of per-seed values (sweeps and many-seed runs)."""
import os

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib import lines as mlines

from common import metrics as metrics_lib
from common import plotting
from sps import metrics as sps_metrics
from sps import music
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
  imgs = model.apply(params, jnp.asarray(zs.reshape(-1, flat.shape[1])), method=SPS.decode)
  imgs = imgs if imgs.ndim == 3 else jax.nn.sigmoid(imgs)   # spectra are decoded linearly
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


def box_plot(path, groups, threshold, title, ylabel='linear projection MSE (log)'):
  """One box of per-seed values per group, every seed drawn as a dot, the threshold dotted."""
  names = list(groups)
  fig, ax = plotting.plt.subplots(figsize=(max(3.5, 1.3 * len(names) + 1.5), 3.4))
  vals = [np.asarray(groups[n], float) for n in names]
  ax.boxplot(vals, showfliers=False)
  rng = np.random.default_rng(0)
  for i, v in enumerate(vals):
    ax.plot(i + 1 + rng.uniform(-0.12, 0.12, len(v)), v, 'o', ms=3.5, alpha=0.7)
  ax.set_xticks(range(1, len(names) + 1), names, fontsize=8, rotation=15 if len(names) > 4 else 0)
  if threshold is not None:
    ax.axhline(threshold, color='gray', ls=':', lw=1)
    ax.set_yscale('log')
  ax.set_ylabel(ylabel, fontsize=9)
  ax.set_title(title, fontsize=9)
  return plotting.save(fig, path)


def music_figures(out, model, params, evaluator, mu, steps):
  """z against true pitch (held-out timbres, one colour per timbre) and the decoder traversal
  drawn as spectra (time-averaged log-magnitude against frequency)."""
  data = evaluator.data
  z, pitch = mu.reshape(-1, mu.shape[-1])[:, 0], data['positions'].reshape(-1)
  timbre = np.repeat(data['timbre'], data['positions'].shape[1])
  fig, axes = plotting.plt.subplots(1, 2, figsize=(10, 3.4))
  for c in np.unique(timbre)[:8]:
    axes[0].plot(pitch[timbre == c], z[timbre == c], 'o', ms=2.5, alpha=0.6,
                 label=f'timbre {c}')
  axes[0].set_xlabel('true pitch (MIDI)')
  axes[0].set_ylabel('z[0]')
  axes[0].legend(fontsize=6, ncol=2)
  axes[0].set_title(f'held-out timbres: z against pitch (mean R² per timbre '
                    f'{evaluator.pitch_r2(mu[None], data)[0]:.3f})', fontsize=9)
  spectra, scores = traversal(model, params, mu, steps)              # (d, steps, F, bins)
  hz = np.arange(music.NUM_BINS) * music.SAMPLE_RATE / music.N_FFT
  colors = plotting.plt.cm.viridis(np.linspace(0, 1, len(scores)))
  for j, s in enumerate(scores):
    axes[1].plot(hz, spectra[0, j].mean(0), color=colors[j], lw=0.8, label=f'{s:+.1f}σ')
  axes[1].set_xlim(0, 4000)
  axes[1].set_xlabel('frequency (Hz)')
  axes[1].set_ylabel('decoded log-magnitude (standardised)')
  axes[1].legend(fontsize=6, ncol=2)
  axes[1].set_title('decoder traversal of z[0] as spectra', fontsize=9)
  return {'pitch': plotting.save(fig, os.path.join(out, 'z_vs_pitch.png'))}


def write_figures(out, config, model, params, evaluator, mu):
  if config.data.scene == 'music':
    paths = music_figures(out, model, params, evaluator, mu, config.eval.traversal_steps)
    paths.update(curves(out, config))
    return paths
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
  fig = trajectory_figure(y.reshape(len(frames), t, -1), fit.reshape(len(frames), t, -1), mse_axis)
  paths['trajectories'] = plotting.save(fig, os.path.join(out, 'z_trajectories.png'))
  paths.update(curves(out, config))
  return paths


def trajectory_figure(y, fit, mse_axis, num_sequences=3):
  """One panel per true coordinate: its trajectory (solid) and the linear read-out of z (dashed)
  over the first sequences, one colour per sequence."""
  names = AXES.get(y.shape[-1], [f'axis{i}' for i in range(y.shape[-1])])
  n = min(num_sequences, len(y))
  fig, axes = plotting.plt.subplots(1, y.shape[-1], figsize=(3 * y.shape[-1], 2.6), squeeze=False)
  for i, ax in enumerate(axes[0]):
    for j in range(n):
      ax.plot(y[j, :, i], '-', color=f'C{j}', lw=1.5)
      ax.plot(fit[j, :, i], '--', color=f'C{j}', lw=1.2)
    ax.set_title(f'{names[i]}  (1-R²={mse_axis[i]:.3f})', fontsize=9)
    ax.set_xlabel('frame')
  axes[0, 0].set_ylabel('standardised position')
  handles = ([mlines.Line2D([], [], color='k', ls='-', label='true position'),
              mlines.Line2D([], [], color='k', ls='--', label='linear read-out of z')] +
             [mlines.Line2D([], [], color=f'C{j}', label=f'test sequence {j}') for j in range(n)])
  axes[0, -1].legend(handles=handles, loc='center left', bbox_to_anchor=(1.02, 0.5), fontsize=8)
  fig.suptitle('true position (solid) vs best linear read-out of z (dashed)', fontsize=10, y=1.04)
  return fig


def curves_figure(train_log, eval_log, config):
  """Train losses and the eval linear projection MSE over training; a panel without records
  says so."""
  fig, axes = plotting.plt.subplots(1, 2, figsize=(9, 3))
  if train_log:
    for key in ('loss', 'self_recon', 'image_pred/identity'):
      if key in train_log[0]:
        axes[0].semilogy([r['step'] for r in train_log], [r[key] for r in train_log], label=key)
    axes[0].legend(fontsize=8)
  else:
    plotting.note(axes[0], plotting.not_yet(config, 'train'))
  axes[0].set_xlabel('step')
  axes[0].set_title('train losses', fontsize=9)
  ev = [r for r in eval_log if 'linear_projection_mse' in r]
  if ev:
    axes[1].semilogy([r['step'] for r in ev], [r['linear_projection_mse'] for r in ev], 'o-')
    axes[1].axhline(0.03, color='gray', ls=':', lw=1)
  else:
    plotting.note(axes[1], plotting.not_yet(config, 'eval'))
  axes[1].set_title('eval linear projection MSE (0.03 dotted)', fontsize=9)
  axes[1].set_xlabel('step')
  return fig


def curves(out, config):
  """curves.png from the workdir's logs, once it has any."""
  workdir = os.path.dirname(os.path.dirname(out))
  train_log, eval_log = metrics_lib.read(workdir, 'train'), metrics_lib.read(workdir, 'eval')
  if not (train_log or eval_log):
    return {}
  fig = curves_figure(train_log, eval_log, config)
  return {'curves': plotting.save(fig, os.path.join(out, 'curves.png'))}
