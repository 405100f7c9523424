"""Evaluate a checkpoint: python -m unsup_video.evaluate --workdir=DIR [--step=N].

Scores the test set (the standard one when the config names it, else the fixed generated
one) with conditional branches fed their own outputs, and writes DIR/eval/step_<N>/:
  metrics.json     cross-entropy per frame (the paper's metric), MSE per frame (summed over
                   pixels, in (0, 1) units) and SSIM, for the future and the reconstruction
  strip_<i>.png    per example: input, reconstruction (shown in input order), true future,
                   predicted future
  per_frame.png    future cross-entropy and SSIM against how far ahead the frame is
  curves.png       training and test cross-entropy against steps

The project's `PROJECT` is declared here (see sps/evaluate.py for why).
"""
import os

import numpy as np

from common import cli
from common import metrics as metrics_lib
from common import plotting
from common import project
from unsup_video import models
from unsup_video import train

PAPER_FUTURE_CE = {'composite + conditional future predictor': 341.2,
                   'future predictor': 350.2}


def strip(frames, prediction, num_input):
  """Rows (4 or 3, T_max, H, W, 1): input, reconstruction, true future, predicted future."""
  tgt = models.targets(frames[None], num_input)
  t = len(frames)
  rows, labels = [frames[:num_input]], [f'input\n1-{num_input}']
  if 'recon' in prediction:
    rows.append(prediction['recon'][::-1])   # the model emits it reversed
    labels.append(f'recon\n1-{num_input}')
  rows.append(tgt['future'][0])
  labels.append(f'future\n{num_input + 1}-{t}')
  if 'future' in prediction:
    rows.append(prediction['future'])
    labels.append(f'predicted\n{num_input + 1}-{t}')
  width = max(len(r) for r in rows)
  pad = lambda r: np.concatenate([r, np.ones((width - len(r),) + r.shape[1:], r.dtype)])
  return np.stack([pad(np.asarray(r)) for r in rows])[..., None], labels


def write_figures(out, config, evaluator, params, per_frame, workdir):
  paths = {}
  n = min(config.eval.examples, len(evaluator.frames))
  frames = evaluator.frames[:n]
  pred = {k: np.asarray(v) for k, v in evaluator.predict(params, frames).items()}
  n_in = config.data.num_input
  for i in range(n):
    rows, labels = strip(frames[i], {k: v[i] for k, v in pred.items()}, n_in)
    paths[f'strip_{i}'] = plotting.image_grid(
        os.path.join(out, f'strip_{i}.png'), rows, row_labels=labels,
        title=f'test sequence {i} ({evaluator.source}); reconstruction shown in input order')

  if 'future' in per_frame:
    fut = per_frame['future']
    ahead = np.arange(1, fut['cross_entropy'].shape[1] + 1)
    fig, axes = plotting.plt.subplots(1, 2, figsize=(10, 3))
    axes[0].plot(ahead, fut['cross_entropy'].mean(0), 'o-', label='own outputs fed back')
    if 'cross_entropy_teacher_forced' in fut:
      axes[0].plot(ahead, fut['cross_entropy_teacher_forced'].mean(0), 's--',
                   label='true frames fed (teacher forced)')
      axes[0].legend(fontsize=8)
    axes[0].set_ylabel('cross-entropy per frame (nats)')
    axes[1].plot(ahead, fut['ssim'].mean(0), 'o-', color='tab:green')
    axes[1].set_ylabel('SSIM')
    for ax in axes:
      ax.set_xlabel('frames ahead')
      ax.set_xticks(ahead)
    fig.suptitle(f'future prediction on {len(fut["ssim"])} test sequences', fontsize=10)
    paths['per_frame'] = plotting.save(fig, os.path.join(out, 'per_frame.png'))

  train_log, eval_log = metrics_lib.read(workdir, 'train'), metrics_lib.read(workdir, 'eval')
  if train_log or eval_log:
    branch = 'future' if 'future' in per_frame else 'recon'
    paths['curves'] = plotting.save(curves_figure(train_log, eval_log, branch, config),
                                    os.path.join(out, 'curves.png'))
  return paths


def curves_figure(train_log, eval_log, branch, config):
  """Training and test cross-entropy of `branch` against steps; missing records are said so."""
  key = f'{branch}_cross_entropy'
  fig, ax = plotting.plt.subplots(figsize=(7, 3))
  if train_log:
    ax.plot([r['step'] for r in train_log], [r[key] for r in train_log],
            label='train (teacher forced)')
  ev = [r for r in eval_log if key in r]
  if ev:
    ax.plot([r['step'] for r in ev], [r[key] for r in ev], 'o-', label='test (own outputs fed)')
  if branch == 'future':
    ax.axhline(PAPER_FUTURE_CE['composite + conditional future predictor'], color='gray',
               ls='--', lw=0.8, label='paper, composite conditional (341.2)')
  ax.set_xlabel('step')
  ax.set_ylabel(f'{branch} cross-entropy / frame')
  ax.legend(fontsize=8)
  for split, records in (('train', train_log), ('eval', ev)):
    if not records:
      plotting.note(ax, plotting.not_yet(config, split))
  return fig


def scorer(config, workdir):
  """(init_state, score) of a saved config, for Project.evaluate."""
  model, _, init_state = train.make_init(config)

  def score(state, step):
    evaluator = train.Evaluator(config, model)
    per_frame = evaluator.per_frame(state.params)
    metrics = evaluator.metrics(state.params, per_frame)
    figures = lambda out: write_figures(out, config, evaluator, state.params, per_frame, workdir)
    return project.Report(
        f'unsup_video evaluation of {workdir} at step {step} on {len(evaluator.frames)} '
        f'sequences of the {evaluator.source} (per frame; cross-entropy in nats, MSE summed over '
        'pixels in (0, 1) units)', metrics, figures,
        {'step': step, 'test_set': evaluator.source, 'num_sequences': len(evaluator.frames)})

  return init_state, score


PROJECT = project.Project(
    name='unsup_video', default_config='configs/unsup_video.py:composite_conditional',
    validate=train.validate, make_task=lambda config, workdir: train.make_task(config),
    scorer=scorer)

evaluate = PROJECT.evaluate   # (workdir, step=None) -> metrics, as the notebook calls it


if __name__ == '__main__':
  cli.run_evaluate(evaluate)
