"""Tests for the VRNN data: IAM-OnDB reader, MNIST rows, normalisation, load()."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from vrnn import data as D
from vrnn import strokes as S

N, T = 32, 256   # the generator shape of test_strokes.py: one compilation for both


# --------------------------------------------------------------------------
# IAM-OnDB
# --------------------------------------------------------------------------

def _write_line(path, strokes):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  body = ''.join(
      '<Stroke colour="black" start_time="0" end_time="1">'
      + ''.join(f'<Point x="{x}" y="{y}" time="{i * 0.01:.2f}"/>' for i, (x, y) in enumerate(s))
      + '</Stroke>' for s in strokes)
  with open(path, 'w') as f:
    f.write('<?xml version="1.0" encoding="ISO-8859-1"?>\n<WhiteboardCaptureSession>'
            '<WhiteboardDescription><SensorLocation corner="top_left"/>'
            '<DiagonallyOppositeCoords x="6512" y="1376"/></WhiteboardDescription>'
            f'<StrokeSet>{body}</StrokeSet></WhiteboardCaptureSession>')


LINE_1 = [[(10, 100), (12, 97), (15, 95)], [(30, 100), (31, 104)]]
LINE_2 = [[(0, 0), (1, 1)]]
LINE_3 = [[(5, 5), (6, 5), (7, 5)]]


@pytest.fixture
def iam_root(tmp_path):
  strokes = tmp_path / 'lineStrokes'
  _write_line(str(strokes / 'a01/a01-000/a01-000u-01.xml'), LINE_1)
  _write_line(str(strokes / 'a01/a01-000/a01-000u-02.xml'), LINE_2)
  _write_line(str(strokes / 'b02/b02-001/b02-001x-01.xml'), LINE_3)
  return str(tmp_path)


def test_iam_offsets_by_hand(iam_root):
  data = D.load_iam(iam_root, max_len=8)
  assert data['ids'] == ['a01-000u-01', 'a01-000u-02', 'b02-001x-01']
  assert data['x'].shape == (3, 8, 3) and data['x'].dtype == np.float32
  # y grows downwards in the files and upwards here.
  expected = np.array([[0, 0, 0], [2, 3, 0], [3, 2, 1], [15, -5, 0], [1, -4, 1],
                       [0, 0, 0], [0, 0, 0], [0, 0, 0]], np.float32)
  np.testing.assert_array_equal(data['x'][0], expected)
  np.testing.assert_array_equal(data['mask'][0], [1, 1, 1, 1, 1, 0, 0, 0])
  np.testing.assert_array_equal(data['x'][1, :2], [[0, 0, 0], [1, -1, 1]])
  np.testing.assert_array_equal(data['length'], [5, 2, 3])


def test_iam_cut_and_root_without_line_strokes(iam_root):
  data = D.load_iam(os.path.join(iam_root, 'lineStrokes', 'a01'), max_len=4)
  assert data['ids'] == ['a01-000u-01', 'a01-000u-02']
  np.testing.assert_array_equal(data['x'][0], [[0, 0, 0], [2, 3, 0], [3, 2, 1], [15, -5, 1]])
  np.testing.assert_array_equal(data['mask'], [[1, 1, 1, 1], [1, 1, 0, 0]])


def test_iam_split_file_filters_forms(iam_root, tmp_path):
  split = tmp_path / 'trainset.txt'
  split.write_text('# forms\n\na01-000u\n')
  assert D.read_split_file(str(split)) == ['a01-000u']
  data = D.load_iam(iam_root, D.read_split_file(str(split)), max_len=8)
  assert data['ids'] == ['a01-000u-01', 'a01-000u-02']
  with pytest.raises(FileNotFoundError, match='requested ids'):
    D.load_iam(iam_root, ['z99-999'], max_len=8)


def test_iam_missing_files(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match=str(empty)):
    D.load_iam(str(empty))
  with pytest.raises(FileNotFoundError, match='not found'):
    D.load_iam(str(tmp_path / 'nowhere'))
  with pytest.raises(FileNotFoundError, match='split file'):
    D.read_split_file(str(tmp_path / 'nowhere.txt'))


# --------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------

def _padded_example():
  x = np.array([[[0, 0, 0], [1, 2, 0], [3, -2, 1], [99, 99, 0]],
                [[0, 0, 0], [4, 6, 1], [-50, 70, 0], [80, 80, 1]]], np.float32)
  mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float32)
  return x, mask


def test_offset_stats_use_real_points_only():
  x, mask = _padded_example()
  mean, std = D.offset_stats(x, mask)
  real = np.array([[0, 0], [1, 2], [3, -2], [0, 0], [4, 6]], np.float64)
  np.testing.assert_allclose(mean, real.mean(0), rtol=1e-6)
  np.testing.assert_allclose(std, real.std(0), rtol=1e-6)
  assert mean.shape == std.shape == (2,)


def test_normalise_round_trip():
  x, mask = _padded_example()
  x = x * mask[..., None]
  mean, std = np.array([1.0, 2.0], np.float32), np.array([2.0, 4.0], np.float32)
  y = D.normalise(x, mask, mean, std)
  np.testing.assert_allclose(y[0, 1], [0.0, 0.0, 0.0])
  np.testing.assert_allclose(y[0, 2], [1.0, -1.0, 1.0])    # pen bit untouched
  np.testing.assert_array_equal(y[mask == 0], 0.0)
  np.testing.assert_allclose(D.denormalise(y, mask, mean, std), x, atol=1e-6)
  # The same on jax arrays.
  yj = D.normalise(jnp.asarray(x), jnp.asarray(mask), mean, std)
  assert isinstance(yj, jax.Array)
  np.testing.assert_allclose(yj, y, atol=1e-6)


# --------------------------------------------------------------------------
# MNIST rows
# --------------------------------------------------------------------------

def test_mnist_rows_through_tfds_data_source():
  with tfds.testing.mock_data(num_examples=6):
    data = D.mnist_rows('train')
  assert data['x'].shape == (6, 28, 28) and data['x'].dtype == np.float32
  np.testing.assert_array_equal(data['mask'], np.ones((6, 28)))
  assert set(np.unique(data['x'])) == {0.0, 1.0}


def _known_images(requested):
  """A mocked data source of two images: 127 (below half) and 128 (above) in a pattern."""
  def as_data_source(self, split, *args, **kwargs):
    requested.append(split)
    image = np.zeros((28, 28, 1), np.uint8)
    image[3, 5] = 128
    image[4, 6] = 127
    image[10:12, :] = 255
    return [{'image': image, 'label': 1}, {'image': 255 - image, 'label': 2}]
  return as_data_source


def test_mnist_rows_binarise_at_half():
  requested = []
  with tfds.testing.mock_data(as_data_source_fn=_known_images(requested)):
    data = D.mnist_rows('test')
  assert requested == ['test']
  x = data['x']
  assert x.shape == (2, 28, 28)
  assert x[0, 3, 5] == 1 and x[0, 4, 6] == 0 and x[0, 10:12].min() == 1
  assert x[0].sum() == 1 + 2 * 28
  np.testing.assert_array_equal(x[1], 1 - x[0])   # 255 - 128 = 127 and 255 - 127 = 128


def test_mnist_rows_not_prepared(tmp_path):
  with pytest.raises(FileNotFoundError, match='tfds build mnist'):
    D.mnist_rows('train', data_dir=str(tmp_path))


# --------------------------------------------------------------------------
# load()
# --------------------------------------------------------------------------

def _config(**kw):
  c = ml_collections.ConfigDict(dict(source='synthetic', path='', train_list='', eval_list='',
                                     num_train=N, num_eval=N, max_len=T))
  c.update(kw)
  return c


def test_load_synthetic_splits_and_stats():
  c = _config()
  train, evals = D.load(c, 'train', seed=0), D.load(c, 'eval', seed=0)
  assert train['x'].shape == evals['x'].shape == (N, T, 3)
  assert not np.allclose(train['x'], evals['x'])
  np.testing.assert_array_equal(train['mean'], evals['mean'])
  np.testing.assert_array_equal(train['std'], evals['std'])
  raw = S.handwriting(jax.random.fold_in(jax.random.PRNGKey(0), 0), N, T)
  mean, std = D.offset_stats(raw['x'], raw['mask'])
  np.testing.assert_allclose(train['mean'], mean, rtol=1e-6)
  real = train['x'][train['mask'] == 1]
  np.testing.assert_allclose(real[:, :2].mean(0), 0.0, atol=1e-4)
  np.testing.assert_allclose(real[:, :2].std(0), 1.0, atol=1e-4)
  np.testing.assert_array_equal(real[:, 2], raw['x'][raw['mask'] == 1][:, 2])
  np.testing.assert_array_equal(train['x'][train['mask'] == 0], 0.0)
  assert not np.allclose(D.load(c, 'train', seed=1)['x'], train['x'])


def test_load_iam(iam_root, tmp_path):
  c = _config(source='iam', path=iam_root, num_train=0, num_eval=1, max_len=8)
  train, evals = D.load(c, 'train', 0), D.load(c, 'eval', 0)
  assert train['x'].shape == (2, 8, 3) and evals['x'].shape == (1, 8, 3)
  raw = D.load_iam(iam_root, max_len=8)
  mean, std = D.offset_stats(raw['x'][:2], raw['mask'][:2])
  np.testing.assert_allclose(evals['mean'], mean)
  np.testing.assert_allclose(evals['std'], std)
  np.testing.assert_allclose(D.denormalise(evals['x'], evals['mask'], mean, std), raw['x'][2:],
                             atol=1e-5)
  (tmp_path / 'train.txt').write_text('b02-001x\n')
  (tmp_path / 'eval.txt').write_text('a01-000u\n')
  c.update(dict(train_list=str(tmp_path / 'train.txt'), eval_list=str(tmp_path / 'eval.txt')))
  assert D.load(c, 'eval', 0)['x'].shape == (1, 8, 3)    # num_eval caps the list
  c.num_eval = 0
  assert D.load(c, 'eval', 0)['x'].shape == (2, 8, 3)
  assert D.load(c, 'train', 0)['x'].shape == (1, 8, 3)
  with pytest.raises(FileNotFoundError, match='data.path'):
    D.load(_config(source='iam'), 'train', 0)


def test_load_mnist_rows_and_bad_config():
  requested = []
  with tfds.testing.mock_data(as_data_source_fn=_known_images(requested)):
    data = D.load(_config(source='mnist_rows', max_len=28, num_eval=1), 'eval', 0)
  assert requested == ['test']
  assert data['x'].shape == (1, 28, 28) and data['mask'].shape == (1, 28)
  np.testing.assert_array_equal(data['mean'], [0, 0])
  np.testing.assert_array_equal(data['std'], [1, 1])
  with pytest.raises(ValueError, match='source'):
    D.load(_config(source='mnist'), 'train', 0)
  with pytest.raises(ValueError, match='split'):
    D.load(_config(), 'test', 0)
