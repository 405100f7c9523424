"""vle pictures: MSE and SSIM after each token against the baseline, tokens needed against
image entropy, per example the reconstruction after each token with each token's contribution and
mask, token ownership against the true objects, and the training curves."""
import os

import matplotlib
import numpy as np

from common import metrics as metrics_lib
from common import plotting
from vle import data as D
from vle import evaluation

NAMES = {'vle': 'VLE', 'baseline': 'baseline VAE (iterated)'}


def colour_labels(labels, num):
  """Integer label maps (..., H, W) -> RGB (..., H, W, 3) with one tab10/tab20 colour per label."""
  cmap = matplotlib.colormaps['tab10' if num <= 10 else 'tab20']
  return cmap(np.asarray(labels) % cmap.N)[..., :3]


def per_token_figure(path, per_token, config, kind):
  fig, axes = plotting.plt.subplots(1, 2, figsize=(10, 3.2))
  n = np.arange(1, config.eval.tokens + 1)
  for name, m in per_token.items():
    label = NAMES[name] if name == 'baseline' else f'VLE ({kind})'
    axes[0].plot(n, m['mse'].mean(1), 'o-', label=label)
    axes[1].plot(n, m['ssim'].mean(1), 'o-', label=label)
  axes[0].axhline(config.eval.mse_threshold, color='gray', ls='--', lw=0.8,
                  label=f'threshold {config.eval.mse_threshold}')
  axes[0].set_yscale('log')
  axes[0].set_ylabel('MSE (pixels in [0, 1])')
  axes[1].set_ylabel('SSIM')
  for ax in axes:
    ax.set_xlabel('tokens')
    ax.set_xticks(n)
    ax.legend(fontsize=8)
  train_max = config.tokens.train_max
  fig.suptitle(f'reconstruction after each token (trained with at most {train_max})', fontsize=10)
  return plotting.save(fig, path)


def entropy_figure(path, per_token, entropy, config):
  fig, ax = plotting.plt.subplots(figsize=(6, 4))
  rng = np.random.default_rng(0)
  n = config.eval.tokens
  for i, (name, m) in enumerate(per_token.items()):
    reach = evaluation.tokens_to_reach(m['mse'], config.eval.mse_threshold)
    jitter = rng.uniform(-0.15, 0.15, reach.shape) + (0.3 * i - 0.15)
    ax.scatter(entropy, reach + jitter, s=8, alpha=0.6, label=NAMES[name])
  ax.axhline(n + 0.5, color='gray', ls=':', lw=0.8)
  ax.set_yticks(list(range(1, n + 2)))
  ax.set_yticklabels([str(k) for k in range(1, n + 1)] + ['never'])
  ax.set_xlabel('image entropy (bits, grey-level histogram)')
  ax.set_ylabel(f'tokens to MSE < {config.eval.mse_threshold}')
  ax.legend(fontsize=8)
  return plotting.save(fig, path)


def token_grid(path, image, outs, base_outs, masked, title):
  """Rows: reconstruction after each token, each token's contribution (0 at mid-grey), its mask,
  the baseline's reconstructions; column 0 is the input."""
  unit = lambda a: np.clip((np.asarray(a) + 1) / 2, 0, 1)
  blank = np.ones_like(image)
  rows = [np.concatenate([image[None], unit(outs['recon'])])]
  labels = ['reconstruction']
  rows.append(np.concatenate([blank[None], np.clip(0.5 + np.asarray(outs['contribution']) / 2,
                                                   0, 1)]))
  labels.append('token adds')
  if masked:
    rows.append(np.concatenate([blank[None], np.repeat(np.asarray(outs['mask']), 3, -1)]))
    labels.append('mask')
  if base_outs is not None:
    rows.append(np.concatenate([image[None], unit(base_outs['recon'])]))
    labels.append('baseline')
  cols = ['input'] + [f'token {k}' for k in range(1, len(outs['recon']) + 1)]
  return plotting.image_grid(path, np.stack(rows), row_labels=labels, col_labels=cols,
                             title=title)


def write_figures(out, config, evaluator, params, per_token, workdir):
  paths = {}
  kind = config.model.kind
  paths['per_token'] = per_token_figure(os.path.join(out, 'per_token.png'), per_token, config,
                                        kind)
  entropy = D.image_entropy(evaluator.images)
  paths['tokens_vs_entropy'] = entropy_figure(os.path.join(out, 'tokens_vs_entropy.png'),
                                              per_token, entropy, config)
  n = min(config.eval.examples, len(evaluator.images))
  if n:
    images = evaluator.images[:n]
    outs = evaluator.tokens(params, images)
    base = evaluator.tokens(params, images, name='baseline') if 'baseline' in params else None
    for i in range(n):
      pick = lambda o: None if o is None else {k: np.asarray(v[:, i]) for k, v in o.items()}
      paths[f'tokens_{i}'] = token_grid(
          os.path.join(out, f'tokens_{i}.png'), images[i], pick(outs), pick(base),
          kind != 'vanilla', f'test image {i}: {config.eval.tokens} tokens ({kind} VLE)')
    k = config.eval.ari_tokens
    cols, labels = [images], ['image']
    if evaluator.has_masks:
      seg = np.asarray(evaluator.test_data[0]['segmentation'][:n])
      cols.append(colour_labels(seg, config.data.max_objects + 1))
      labels.append('true objects')
    for name, m in per_token.items():
      cols.append(colour_labels(m['owner'][:n], k))
      labels.append(f'{NAMES[name]}\nfirst {k} tokens')
    paths['masks'] = plotting.image_grid(
        os.path.join(out, 'masks.png'), np.stack(cols, axis=1), col_labels=labels, scale=1.5,
        title='which token explains each pixel')

  train_log, eval_log = metrics_lib.read(workdir, 'train'), metrics_lib.read(workdir, 'eval')
  if train_log or eval_log:
    paths['training'] = plotting.save(training_figure(train_log, eval_log, config),
                                      os.path.join(out, 'training.png'))
  return paths


def training_figure(train_log, eval_log, config):
  """Training losses and test MSE after 4 tokens against steps; missing records are said so."""
  fig, ax = plotting.plt.subplots(figsize=(7, 3))
  if train_log:
    steps = [r['step'] for r in train_log]
    ax.plot(steps, [r['final_mse'] for r in train_log], label='train: MSE after last token')
    if 'baseline_mse' in train_log[0]:
      ax.plot(steps, [r['baseline_mse'] for r in train_log], label='train: baseline VAE MSE')
  key = f'mse_{min(4, config.eval.tokens)}'
  ev = [r for r in eval_log if key in r]
  if ev:
    ax.plot([r['step'] for r in ev], [4 * r[key] for r in ev], 'o-',
            label=f'test: MSE after {key[4:]} tokens')
  ax.set_yscale('log')
  ax.set_xlabel('step')
  ax.set_ylabel('MSE (pixels in [-1, 1])')
  ax.legend(fontsize=8)
  for split, records in (('train', train_log), ('eval', ev)):
    if not records:
      plotting.note(ax, plotting.not_yet(config, split))
  return fig
