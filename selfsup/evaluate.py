"""Evaluate a checkpoint: python -m selfsup.evaluate --workdir=DIR [--step=N].

Writes DIR/eval/step_<N>/:
  metrics.json     kNN and linear-probe accuracy of the encoder's features (labelled train ->
                   validation), the classifier's validation accuracy (finetune runs), the pretext
                   task's loss and accuracy on unaugmented validation images (pretext runs), and
                   the gradient norm of every layer on one training batch
  confusion.png    the validation confusion matrix (classifier, else linear probe), rows = truth
  mistakes.png     the validation images predicted wrong with the highest confidence
  grad_norms.png   gradient norm per layer on one training batch (the log's first suspect)
  examples.png     what the model is trained on: a few examples of the task with their targets
  training.png     training loss and accuracy, and the evaluation accuracies, against steps

The project's `PROJECT` is declared here (see sps/evaluate.py for why).
"""
import functools
import os

import jax
import numpy as np

from common import cli
from common import metrics as metrics_lib
from common import plotting
from common import project
from selfsup import data as D
from selfsup import train


def class_names(config, num_classes):
  if config.data.source == 'synthetic':
    return list(D.CLASSES)
  return [str(i) for i in range(num_classes)]


def confusion_matrix(labels, predictions, num_classes):
  """(num_classes, num_classes) counts: row = true class, column = predicted."""
  m = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(m, (np.asarray(labels), np.asarray(predictions)), 1)
  return m


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


def top_mistakes(scores, labels, n):
  """Indices of the (up to) n wrong predictions with the highest predicted probability."""
  p = np.exp(scores - scores.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  pred = p.argmax(-1)
  wrong = np.flatnonzero(pred != labels)
  return wrong[np.argsort(-p[wrong, pred[wrong]], kind='stable')][:n], pred, p


def mistakes_figure(path, images, scores, labels, names, n, title):
  idx, pred, p = top_mistakes(scores, labels, n)
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


def layer_grad_norms(grads):
  """{layer path: l2 norm of its gradients} (a layer = the module owning the leaves)."""
  out = {}
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    name = '/'.join(str(getattr(k, 'key', k)) for k in path[:-1])
    out[name] = out.get(name, 0.0) + float(np.square(np.asarray(g)).sum())
  return {k: v ** 0.5 for k, v in out.items()}


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


def scorer(config, workdir):
  """(init_state, score) of a saved config, for Project.evaluate."""
  data = train.datasets(config)
  model, tx, init_state = train.make_init(config, data['num_classes'])

  def score(state, step):
    evaluator = train.Evaluator(config, model, data)
    predictions = evaluator.predictions(state)
    metrics = evaluator.metrics(state, predictions)

    # Gradients of every layer on one training batch (augmented, as in training).
    _, loss_fn = train.make_train_step(model, tx, config)
    pool = data['train'][0] if config.task == 'classify' else data['unlabelled']
    labels = data['train'][1] if config.task == 'classify' else None
    batch = jax.jit(train.make_batch_fn(config, pool, labels))(jax.random.PRNGKey(config.seed))
    grads, _ = jax.jit(jax.grad(loss_fn, has_aux=True))(state.params, state.batch_stats, batch)
    grad_norms = layer_grad_norms(grads)
    num_params = int(sum(np.prod(x.shape) for x in jax.tree.leaves(state.params)))
    return project.Report(
        f'selfsup evaluation of {workdir} ({config.task}) at step {step} on '
        f'{data["source"]}; {num_params} parameters', metrics,
        lambda out: write_figures(out, config, data, predictions, metrics, batch, grad_norms,
                                  step, workdir),
        {'step': step, 'task': config.task, 'data': data['source'], 'num_params': num_params,
         'grad_norms': grad_norms, 'init_from': config.finetune.init_from})

  return init_state, score


def write_figures(out, config, data, predictions, metrics, batch, grad_norms, step, workdir):
  names = class_names(config, data['num_classes'])
  val_images, val_labels = (np.asarray(a) for a in data['val'])
  which = 'classifier' if 'classifier' in predictions else 'probe'
  what = 'classifier' if which == 'classifier' else 'linear probe on frozen features'
  pred = predictions[which]
  figures = {
      'confusion': confusion_figure(
          os.path.join(out, 'confusion.png'),
          confusion_matrix(val_labels, pred.argmax(-1), data['num_classes']), names,
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


PROJECT = project.Project(
    name='selfsup', default_config='configs/selfsup.py:mixup', validate=train.validate,
    make_task=lambda config, workdir: train.make_task(config), scorer=scorer,
    validate_saved=functools.partial(train.validate, num_devices=1, check_source=False))

evaluate = PROJECT.evaluate   # (workdir, step=None) -> metrics, as the notebook calls it


if __name__ == '__main__':
  cli.run_evaluate(evaluate)
