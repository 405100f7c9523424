"""Evaluate a VRNN checkpoint: python -m vrnn.evaluate --workdir=DIR [--step=N].

Writes DIR/eval/step_<N>/metrics.json (ELBO per sequence and per step, the importance-sampled
log-likelihood, the KL and the active latent units) and PNGs: sampled sequences, reconstructions, KL per step, training curves.

The project's `PROJECT` is declared here (see sps/evaluate.py for why).
"""
import os

import jax
import jax.numpy as jnp
import numpy as np

from common import cli
from common import metrics as metrics_lib
from common import plotting
from common import project
from vrnn import data as vrnn_data
from vrnn import distributions as dist
from vrnn import models
from vrnn import train


def strokes(x, mask, mean, std):
  """Pen positions from normalised (dx, dy, pen_up) rows: a list of (n, 2) arrays, split at pen-up."""
  x = x[mask > 0]
  xy = np.cumsum(x[:, :2] * std + mean, axis=0)
  ends = np.flatnonzero(x[:, 2] > 0.5) + 1
  return [s for s in np.split(xy, ends) if len(s)]


def draw_strokes(ax, parts, **kw):
  for s in parts:
    ax.plot(s[:, 0], s[:, 1], '-', lw=kw.get('lw', 1.2), color=kw.get('color', 'k'),
            alpha=kw.get('alpha', 1.0))
  ax.set_aspect('equal')
  ax.axis('off')


def reconstruct(model, params, x):
  """The mean of p(x_t | z_t, h_{t-1}) with z_t the encoder's mean, given the true x_<t."""
  eps = jnp.zeros(x.shape[:2] + (model.z_dim,), jnp.float32)
  outs = models.unroll(model, params, jnp.asarray(x), eps)
  return np.asarray(dist.mean(model.output, outs['out']))


def sample(model, params, config, n, length):
  length = config.eval.generate_len or length
  xs = models.generate(model, params, jax.random.PRNGKey(2), n, length, config.eval.temperature)
  return np.asarray(xs)


def write_figures(out, config, model, params, evaluator, terms):
  data, paths = evaluator.data, {}
  n = min(config.eval.examples, len(data['x']))
  samples = sample(model, params, config, config.eval.num_generate, data['x'].shape[1])
  recon = reconstruct(model, params, data['x'][:n])
  if config.model.pen_bit:   # stroke data
    mean, std = data['mean'], data['std']
    ones = np.ones(samples.shape[1])
    fig, axes = plotting.plt.subplots(len(samples), 1, figsize=(10, 1.4 * len(samples)),
                                      squeeze=False)
    for ax, s in zip(axes[:, 0], samples):
      draw_strokes(ax, strokes(s, ones, mean, std))
    fig.suptitle(f'samples from the model ({samples.shape[1]} steps, temperature '
                 f'{config.eval.temperature})', fontsize=10)
    paths['samples'] = plotting.save(fig, os.path.join(out, 'samples.png'))

    fig, axes = plotting.plt.subplots(n, 1, figsize=(10, 1.6 * n), squeeze=False)
    for ax, x, r, m in zip(axes[:, 0], data['x'], recon, data['mask']):
      true = strokes(x, m, mean, std)
      draw_strokes(ax, true, color='k', lw=1.6)
      # Each predicted offset starts from the true previous point: one-step predictions.
      xy = np.cumsum(x[m > 0, :2] * std + mean, axis=0)
      pred = np.concatenate([[0 * xy[0]], xy[:-1]]) + r[m > 0, :2] * std + mean
      ends = np.flatnonzero(x[m > 0, 2] > 0.5) + 1
      draw_strokes(ax, [s for s in np.split(pred, ends) if len(s)], color='tab:red', lw=1.0,
                   alpha=0.8)
    fig.suptitle('held-out lines (black) and one-step reconstructions (red: true previous point '
                 '+ the decoder mean, z = encoder mean)', fontsize=10)
    paths['reconstructions'] = plotting.save(fig, os.path.join(out, 'reconstructions.png'))
  elif config.model.output != 'bernoulli':   # continuous features: traces in the data's units
    mean, std = data['mean'], data['std']
    shown = min(samples.shape[-1], 4)
    real = lambda a, m: vrnn_data.denormalise(a, m, mean, std)
    paths['samples'] = plotting.save(traces_figure(
        [real(s, np.ones(len(s))) for s in samples], None, shown,
        f'samples from the model ({samples.shape[1]} steps, temperature '
        f'{config.eval.temperature}), features 0-{shown - 1}'), os.path.join(out, 'samples.png'))
    masks = data['mask'][:n]
    paths['reconstructions'] = plotting.save(traces_figure(
        [real(x, m)[m > 0] for x, m in zip(data['x'][:n], masks)],
        [real(r, m)[m > 0] for r, m in zip(recon, masks)], shown,
        'held-out sequences (black) and one-step reconstructions (red: the decoder mean, '
        'z = encoder mean)'), os.path.join(out, 'reconstructions.png'))
  else:   # bit rows: show them as images
    paths['samples'] = plotting.image_grid(
        os.path.join(out, 'samples.png'), samples[None, ..., None],
        title='samples from the model (rows generated top to bottom)')
    rows = np.stack([data['x'][:n], recon], 0)[..., None]
    paths['reconstructions'] = plotting.image_grid(
        os.path.join(out, 'reconstructions.png'), rows, row_labels=['true', 'p(x=1)'],
        title='held-out images and the decoder mean per row')

  mask = data['mask']
  count = np.maximum(mask.sum(0), 1)
  fig, axes = plotting.plt.subplots(1, 3, figsize=(15, 3))
  axes[0].plot(terms['kl'].sum(0) / count)
  axes[0].set_title('KL(q(z_t) || p(z_t)) per step', fontsize=10)
  axes[1].plot(terms['log_px'].sum(0) / count, color='tab:orange')
  axes[1].set_title('log p(x_t | z_t, h_{t-1}) per step', fontsize=10)
  for ax in axes[:2]:
    ax.set_xlabel('step t')
  axes[0].set_ylabel('nats (mean over held-out sequences)')
  latent_panel(axes[2], terms, mask, config.model.latent)
  paths['kl_per_step'] = plotting.save(fig, os.path.join(out, 'kl_per_step.png'))

  workdir = os.path.dirname(os.path.dirname(out))
  train_log, eval_log = metrics_lib.read(workdir, 'train'), metrics_lib.read(workdir, 'eval')
  if train_log or eval_log:
    paths['curves'] = plotting.save(curves_figure(train_log, eval_log, config),
                                    os.path.join(out, 'curves.png'))
  return paths


def latent_panel(ax, terms, mask, latent):
  """Per latent dimension: its KL per real step and its activity (the active-unit criterion)."""
  if not latent:
    plotting.note(ax, 'no latent variables (model.latent=False)')
    ax.axis('off')
    return
  kl = terms['kl_dims'].sum((0, 1)) / max(mask.sum(), 1)
  activity = train.latent_activity(terms['shift'], mask)
  dims = np.arange(len(kl))
  ax.bar(dims - 0.2, kl, 0.4, label='KL per step (nats)')
  ax.bar(dims + 0.2, activity, 0.4, color='tab:green', label='activity Var[shift]')
  ax.axhline(train.ACTIVE_THRESHOLD, color='k', lw=0.8, ls='--', label='active above')
  ax.set_yscale('log')
  ax.set_xticks(dims[::max(1, len(dims) // 16)])
  ax.set_xlabel('latent dimension')
  active = int(np.sum(activity > train.ACTIVE_THRESHOLD))
  ax.set_title(f'latents: {active} of {len(kl)} active', fontsize=10)
  ax.legend(fontsize=7)


def traces_figure(true, recon, features, title):
  """One panel per sequence, one row per feature: the sequence (black), the reconstruction."""
  fig, axes = plotting.plt.subplots(features, len(true), figsize=(min(2.6, 16 / len(true)) * len(true), 1.3 * features),
                                    squeeze=False, sharex='col')
  for j, seq in enumerate(true):
    for d in range(features):
      ax = axes[d, j]
      ax.plot(seq[:, d], color='k', lw=1.0)
      if recon is not None:
        ax.plot(recon[j][:, d], color='tab:red', lw=0.9, alpha=0.8)
      ax.tick_params(labelsize=6)
      if j == 0:
        ax.set_ylabel(f'x[{d}]', fontsize=8)
    axes[-1, j].set_xlabel('step t', fontsize=8)
  fig.suptitle(title, fontsize=9)
  return fig


def curves_figure(train_log, eval_log, config):
  """Train and eval ELBO per step against steps; missing records are said so."""
  fig, ax = plotting.plt.subplots(figsize=(7, 3))
  if train_log:
    ax.plot([r['step'] for r in train_log], [r['elbo_per_step'] for r in train_log], label='train')
  ev = [r for r in eval_log if 'elbo_per_step' in r]
  if ev:
    ax.plot([r['step'] for r in ev], [r['elbo_per_step'] for r in ev], 'o-', label='eval')
  ax.set_xlabel('step')
  ax.set_ylabel('ELBO per step (nats)')
  ax.legend(fontsize=8)
  for split, records in (('train', train_log), ('eval', ev)):
    if not records:
      plotting.note(ax, plotting.not_yet(config, split))
  return fig


def scorer(config, workdir):
  """(init_state, score) of a saved config, for Project.evaluate."""
  model, _, init_state = train.make_init(config)

  def score(state, step):
    evaluator = train.workdir_evaluator(config, model, workdir)
    terms = evaluator.step_terms(state.params)   # for the metrics and the figures
    metrics = evaluator.metrics(state.params, with_likelihood=True, terms=terms)
    metrics['num_sequences'] = len(evaluator.data['x'])
    metrics['mean_length'] = float(evaluator.data['mask'].sum(1).mean())
    units = "in the data's units" if config.eval.data_units else 'of the normalised data'
    figures = lambda out: write_figures(out, config, model, state.params, evaluator, terms)
    return project.Report(
        f'VRNN evaluation of {workdir} at step {step} on {metrics["num_sequences"]} held-out '
        f'sequences (nats, {units}; log-likelihood from {config.eval.is_samples} importance '
        'samples)', metrics, figures,
        {'step': step, 'is_samples': config.eval.is_samples, 'data_units': config.eval.data_units})

  return init_state, score


# The workdir keeps the data's normalisation, so that resume and evaluation use the same.
PROJECT = project.Project(name='vrnn', default_config='configs/vrnn.py:handwriting',
                          validate=train.validate, make_task=train.make_task, scorer=scorer)

evaluate = PROJECT.evaluate   # (workdir, step=None) -> metrics, as the notebook calls it


if __name__ == '__main__':
  cli.run_evaluate(evaluate)
