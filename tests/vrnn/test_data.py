"""Tests for the VRNN data: generated handwriting, IAM-OnDB reader, MNIST rows, normalisation."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from vrnn import data as D

N, T = 32, 256   # one compiled generator shape for every synthetic test


@pytest.fixture(scope='module')
def lines():
  return D.handwriting(jax.random.PRNGKey(0), N, T)


# --------------------------------------------------------------------------
# Generated handwriting
# --------------------------------------------------------------------------

def test_handwriting_shapes_and_determinism(lines):
  assert lines['x'].shape == (N, T, 3) and lines['x'].dtype == np.float32
  assert lines['mask'].shape == (N, T) and lines['mask'].dtype == np.float32
  assert lines['text'].dtype == np.int32 and lines['text'].shape == (N, 3 * 5 + 2)
  again = D.handwriting(jax.random.PRNGKey(0), N, T)
  for k in ('x', 'mask', 'text'):
    np.testing.assert_array_equal(lines[k], again[k])
  other = D.handwriting(jax.random.PRNGKey(1), N, T)
  assert not np.array_equal(lines['text'], other['text'])
  assert not np.allclose(lines['x'][:, :20], other['x'][:, :20])
  # Typed keys give the same lines; a smaller set is a prefix of a larger one.
  np.testing.assert_array_equal(D.handwriting(jax.random.key(0), N, T)['x'], lines['x'])
  np.testing.assert_array_equal(D.handwriting(jax.random.PRNGKey(0), 5, T)['x'], lines['x'][:5])


def test_handwriting_mask_padding_and_pen(lines):
  x, mask = lines['x'], lines['mask']
  n = mask.sum(1).astype(int)
  assert np.all(np.diff(mask, axis=1) <= 0) and set(np.unique(mask)) <= {0.0, 1.0}
  np.testing.assert_array_equal(n, np.minimum(lines['length'], T))
  assert n.min() >= 40
  np.testing.assert_array_equal(x[mask == 0], 0.0)
  assert set(np.unique(x[..., 2])) <= {0.0, 1.0}
  np.testing.assert_array_equal(x[np.arange(N), n - 1, 2], 1.0)
  np.testing.assert_array_equal(x[:, 0, :2], 0.0)   # the line starts at its origin
  real = x[mask == 1][:, :2]
  assert np.all(np.isfinite(real)) and np.abs(real).max() < 300
  assert np.median(np.linalg.norm(real, axis=-1)) < 5   # a few units per point


def test_handwriting_strokes_match_text(lines):
  # One pen-down stroke per word, plus one per i-dot and t-cross.
  for x, mask, text, length in zip(lines['x'], lines['mask'], lines['text'], lines['length']):
    s = D.text_to_string(text)
    words = s.split(' ')
    assert 2 <= len(words) <= 3 and all(3 <= len(w) <= 5 for w in words)
    assert np.all(text[len(s):] == -1)
    if length <= T:
      assert x[:, 2].sum() == len(words) + s.count('i') + s.count('t')


def test_handwriting_runs_left_to_right(lines):
  for x, mask in zip(lines['x'], lines['mask']):
    xy = np.cumsum(x[mask == 1, :2], axis=0)
    assert xy[-1, 0] > 0 and np.ptp(xy[:, 0]) > 2 * np.ptp(xy[:, 1])
    # Each quarter of the points ends further right than the previous one.
    q = np.array_split(xy[:, 0], 4)
    assert all(q[i + 1].mean() > q[i].mean() for i in range(3))


def test_handwriting_style_controls():
  key = jax.random.PRNGKey(3)
  fixed = dict(jitter=(0.0, 0.0))
  small = D.handwriting(key, N, T, size=(5.0, 5.0), speed=(0.5, 0.5), **fixed)
  big = D.handwriting(key, N, T, size=(10.0, 10.0), speed=(0.5, 0.5), **fixed)
  fast = D.handwriting(key, N, T, size=(5.0, 5.0), speed=(1.0, 1.0), **fixed)
  # The uniform draws do not depend on the ranges: same text in every hand.
  np.testing.assert_array_equal(small['text'], big['text'])
  np.testing.assert_array_equal(small['text'], fast['text'])
  # Size scales the drawing and keeps the number of points.
  np.testing.assert_array_equal(small['mask'], big['mask'])
  np.testing.assert_allclose(big['x'][..., :2], 2 * small['x'][..., :2], rtol=1e-4, atol=1e-3)
  # Twice the arc length per point: about half the points.
  ratio = fast['length'] / small['length']
  assert np.all(ratio < 0.65) and np.all(ratio > 0.4)


def test_handwriting_cut_at_max_len_and_bad_style(lines):
  short = D.handwriting(jax.random.PRNGKey(0), N, 32)
  np.testing.assert_array_equal(short['mask'], 1.0)
  np.testing.assert_array_equal(short['x'][:, -1, 2], 1.0)
  # Not the same program (max_len is static), but the same writing.
  np.testing.assert_allclose(short['x'][:, :-1], lines['x'][:, :31], atol=1e-4)
  with pytest.raises(ValueError, match='unknown style'):
    D.handwriting(jax.random.PRNGKey(0), 2, 16, colour=(0, 1))
  with pytest.raises(ValueError, match='lo <= hi'):
    D.handwriting(jax.random.PRNGKey(0), 2, 16, size=(2.0, 1.0))


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
  raw = D.handwriting(jax.random.fold_in(jax.random.PRNGKey(0), 0), N, T)
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
