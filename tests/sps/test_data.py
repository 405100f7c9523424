"""Tests for the SPS datasets: generated sets, the released folder layout, errors."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from sps import data as D
from sps import render as R


# --------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------

@pytest.mark.parametrize('scene,frames,dim', [('bouncing_ball', 20, 3), ('two_body', 25, 6)])
def test_make_dataset(scene, frames, dim):
  ds = D.make_dataset(scene, 8, seed=1, split='train')
  assert ds['frames'].shape == (8, frames, 32, 32, 3)
  assert ds['positions'].shape == (8, frames, dim)
  assert ds['frames'].dtype == np.float32 and ds['positions'].dtype == np.float32
  assert ds['frames'].min() >= 0.0 and ds['frames'].max() <= 1.0
  again = D.make_dataset(scene, 8, seed=1, split='train')
  np.testing.assert_array_equal(ds['frames'], again['frames'])
  np.testing.assert_array_equal(ds['positions'], again['positions'])
  prefix = D.make_dataset(scene, 3, seed=1, split='train')
  np.testing.assert_array_equal(prefix['positions'], ds['positions'][:3])
  evl = D.make_dataset(scene, 8, seed=1, split='eval')
  other = D.make_dataset(scene, 8, seed=2, split='train')
  for ds2 in (evl, other):
    assert not np.any(np.all(np.isclose(ds2['positions'][:, None], ds['positions'][None]),
                             axis=(2, 3)))


def test_make_dataset_options():
  ds = D.make_dataset('bouncing_ball', 2, seed=0, split='eval', num_frames=5, image_size=16)
  assert ds['frames'].shape == (2, 5, 16, 16, 3) and ds['positions'].shape == (2, 5, 3)


# --------------------------------------------------------------------------
# Folder loading
# --------------------------------------------------------------------------

def _write_png(path, img):
  Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path)


def test_load_folder_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  frames = rng.uniform(size=(2, 4, 32, 32, 3)).astype(np.float32)
  positions = rng.uniform(-3, 3, size=(2, 4, 3)).round(3).astype(np.float32)
  for s, name in enumerate(['2', '10']):  # numeric, not lexicographic, order
    os.makedirs(tmp_path / name)
    for t in (3, 0, 2, 1):
      x, y, z = positions[s, t]
      img = frames[s, t]
      if s == 1:  # the released format, at a higher resolution
        fname = f'{t}.[{x}, {y}, {z}].png'
        img = np.kron(img, np.ones((2, 2, 1)))
      else:
        fname = f'{t}_{x}_{y}_{z}.png'
      _write_png(tmp_path / name / fname, img)
  ds = D.load_folder(str(tmp_path))
  assert ds['frames'].shape == (2, 4, 32, 32, 3) and ds['frames'].dtype == np.float32
  np.testing.assert_allclose(ds['positions'], positions, atol=1e-6)
  np.testing.assert_allclose(ds['frames'], frames, atol=1 / 255)
  assert D.load_folder(str(tmp_path), num_frames=3)['frames'].shape == (2, 3, 32, 32, 3)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

def test_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="expected one of \\('bouncing_ball', 'two_body'\\)"):
    D.make_dataset('pendulum', 4, 0, 'train')
  with pytest.raises(ValueError, match='unknown scene'):
    R.project(jnp.zeros(3), 'pendulum')
  with pytest.raises(ValueError, match='unknown split'):
    D.make_dataset('two_body', 4, 0, 'test')
  with pytest.raises(ValueError, match='not found'):
    D.load_folder(str(tmp_path / 'missing'))
  with pytest.raises(ValueError, match='no PNG sequences'):
    D.load_folder(str(tmp_path))
