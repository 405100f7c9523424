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
