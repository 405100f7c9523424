"""The pictures of a selfsup evaluation (see evaluate.py for the files) and the training curves."""
import os

import jax
import numpy as np

from common import metrics as metrics_lib
from common import plotting
from selfsup import data as D
from selfsup import evaluation


def class_names(config, num_classes):
  if config.data.source == 'synthetic':
    return list(D.CLASSES)
  return [str(i) for i in range(num_classes)]


def confusion_figure(path, matrix, names, title):
  k = len(names)
  fig, ax = plotting.plt.subplots(figsize=(0.5 * k + 3, 0.5 * k + 2.5))
  rows = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
  ax.imshow(rows, cmap='Blues', vmin=0, vmax=1)
  if k <= 20:
    for i in range(k):
      for j in range(k):
        if matrix[i, j]:
          ax.text(j, i, str(matrix[i, j]), ha='center', va='center', fontsize=7,
                  color='white' if rows[i, j] > 0.5 else 'black')
  ax.set_xticks(range(k))
  ax.set_yticks(range(k))
  ax.set_xticklabels(names, rotation=60, ha='right', fontsize=7)
  ax.set_yticklabels(names, fontsize=7)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  ax.set_title(title, fontsize=9)
  return plotting.save(fig, path)


def mistakes_figure(path, images, scores, labels, names, n, title):
  idx, pred, p = evaluation.top_mistakes(scores, labels, n)
  if not len(idx):
    idx = np.arange(min(n, len(labels)))   # nothing wrong: show the first ones
  cols = min(8, len(idx))
  rows = -(-len(idx) // cols)
  grid = np.ones((rows, cols) + images.shape[1:], np.float32)
  titles = [[''] * cols for _ in range(rows)]
  for j, i in enumerate(idx):
    grid[j // cols, j % cols] = images[i] / 255.0
    titles[j // cols][j % cols] = (f'{names[labels[i]]}\n-> {names[pred[i]]} '
                                   f'{p[i, pred[i]]:.2f}')
  return plotting.image_grid(path, grid, title=title, scale=1.6, titles=titles)


def grad_norm_figure(path, norms, title):
  names = list(norms)
  fig, ax = plotting.plt.subplots(figsize=(7, 0.22 * len(names) + 1))
  ax.barh(range(len(names)), [norms[k] for k in names], color='tab:blue')
  ax.set_yticks(range(len(names)))
  ax.set_yticklabels(names, fontsize=6)
  ax.invert_yaxis()
  ax.set_xscale('log')
  ax.set_xlabel('gradient l2 norm')
  ax.set_title(title, fontsize=9)
  return plotting.save(fig, path)


def examples_figure(path, batch, config, names, n=4):
  """The task's first n examples with their targets, as the model sees them."""
  b = jax.device_get(batch)
  t = config.task
  n = min(n, len(next(iter(b.values()))))
  rows, titles = [], []
  for i in range(n):
    if t in ('mixup', 'scale'):
      rows.append(np.concatenate([b['query'][i][None], b['candidates'][i]]))
      titles.append(['query'] + [f'w={w:.2f}' if w else '-' for w in b['weights'][i]])
    elif t == 'simclr':
      rows.append(np.stack([b['view1'][i], b['view2'][i]]))
      titles.append(['view 1', 'view 2'])
    elif t == 'quadrant':
      rows.append(b['query'][i][None])
      titles.append([('top-left', 'top-right', 'bottom-left', 'bottom-right')[b['label'][i]]])
    elif t == 'patchwork':
      rows.append(b['query'][i][None])
      titles.append(['same image' if b['label'][i] else 'other image'])
    else:
      rows.append(b['image'][i][None])
      titles.append([names[b['label'][i]]])
  return plotting.image_grid(path, np.stack(rows), title=f'{t}: training examples', scale=1.6,
                             titles=titles)


def training_figure(train_log, eval_log, config):
  """Training loss and accuracy, and the evaluation accuracies, against steps; missing records
  are said so."""
  fig, axes = plotting.plt.subplots(1, 2, figsize=(10, 3.2))
  if train_log:
    steps = [r['step'] for r in train_log]
    axes[0].plot(steps, [r['loss'] for r in train_log], label='train loss')
    axes[1].plot(steps, [r['accuracy'] for r in train_log], label='train: task accuracy')
  axes[0].set_ylabel('loss')
  evaluated = False
  for key in ('knn_accuracy', 'probe_accuracy', 'classifier_accuracy', 'task_accuracy'):
    ev = [r for r in eval_log if key in r]
    if ev:
      axes[1].plot([r['step'] for r in ev], [r[key] for r in ev], 'o-',
                   label=f'validation: {key.replace("_", " ")}')
      evaluated = True
  axes[1].set_ylabel('accuracy')
  axes[1].set_ylim(0, 1)
  for ax in axes:
    ax.set_xlabel('step')
    if ax.has_data():
      ax.legend(fontsize=7)
  if not train_log:
    plotting.note(axes[0], plotting.not_yet(config, 'train'))
  if not evaluated:
    plotting.note(axes[1], plotting.not_yet(config, 'eval'))
  return fig


def training_plot(path, workdir, config):
  """training.png from the workdir's logs (None before it has any)."""
  train_log, eval_log = metrics_lib.read(workdir, 'train'), metrics_lib.read(workdir, 'eval')
  if not (train_log or eval_log):
    return None
  return plotting.save(training_figure(train_log, eval_log, config), path)


def write_figures(out, config, data, predictions, metrics, batch, grad_norms, step, workdir):
  names = class_names(config, data['num_classes'])
  val_images, val_labels = (np.asarray(a) for a in data['val'])
  which = 'classifier' if 'classifier' in predictions else 'probe'
  what = 'classifier' if which == 'classifier' else 'linear probe on frozen features'
  pred = predictions[which]
  figures = {
      'confusion': confusion_figure(
          os.path.join(out, 'confusion.png'),
          evaluation.confusion_matrix(val_labels, pred.argmax(-1), data['num_classes']), names,
          f'validation confusion, {what} (accuracy {metrics[which + "_accuracy"]:.3f})'),
      'mistakes': mistakes_figure(
          os.path.join(out, 'mistakes.png'), val_images, pred, val_labels, names,
          config.eval.mistakes, f'most confident mistakes ({what}): true -> predicted p'),
      'grad_norms': grad_norm_figure(
          os.path.join(out, 'grad_norms.png'), grad_norms,
          f'{config.task}: gradient norm per layer at step {step}'),
      'examples': examples_figure(os.path.join(out, 'examples.png'), batch, config, names),
  }
  curves = training_plot(os.path.join(out, 'training.png'), workdir, config)
  if curves:
    figures['training'] = curves
  return figures
