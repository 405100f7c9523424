"""Figures every project writes: image grids and line plots, saved as PNG (no display needed)."""
import os

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def save(fig, path):
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path, dpi=100, bbox_inches='tight')
  plt.close(fig)
  return path


def first_record_step(config, split):
  """The step of the loop's first 'train' or 'eval' record (every N steps and at the last one,
  for eval only if eval_at_end); None when the run has none."""
  every, at_end = ((config.log_every, True) if split == 'train' else
                   (config.eval_every, config.get('eval_at_end', True)))
  if every <= config.num_steps:
    return every
  return config.num_steps if at_end else None


def not_yet(config, split):
  """What a panel without `split` records says: 'no evaluation yet (the first at step 1000)'."""
  what = 'training records' if split == 'train' else 'evaluation'
  first = first_record_step(config, split)
  return f'no {what} in this run' if first is None else f'no {what} yet (the first at step {first})'


def note(ax, text):
  """Says in words what a panel lacks. Without data: the text and no ticks (the range matplotlib
  gives an empty axis, -0.04..0.04, means nothing); with some: the text under the title."""
  if ax.has_data():
    ax.set_title('\n'.join(filter(None, [ax.get_title(), text])), fontsize=9)
  else:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha='center', va='center', fontsize=9,
            color='gray')
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid(path, images, row_labels=None, col_labels=None, title=None, scale=1.0,
               titles=None):
  """Saves a (rows, cols, H, W, C) array of images in [0, 1] as one PNG with labels;
  `titles` (rows x cols strings) captions each image."""
  images = np.clip(np.asarray(images, np.float32), 0, 1)
  rows, cols = images.shape[:2]
  fig, axes = plt.subplots(rows, cols, figsize=(scale * cols * 0.8 + 1, scale * rows * 0.8 + 0.3),
                           squeeze=False)
  for r in range(rows):
    for c in range(cols):
      ax = axes[r, c]
      img = images[r, c]
      ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap='gray', vmin=0, vmax=1,
                interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      if c == 0 and row_labels is not None:
        ax.set_ylabel(row_labels[r], fontsize=8)
      if r == 0 and col_labels is not None:
        ax.set_title(col_labels[c], fontsize=8)
      if titles is not None:
        ax.set_title(titles[r][c], fontsize=7)
  fig.subplots_adjust(wspace=0.05, hspace=0.4 if titles is not None else 0.05)
  if title:   # above the captions of the top row
    fig.suptitle(title, fontsize=10, y=1.0 + (0.12 / rows if titles is not None else 0.0))
  return save(fig, path)
