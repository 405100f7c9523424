"""Tests for the Moving MNIST data: generator, embedded digits, MNIST and test-set loaders."""

import importlib.util
import time

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from unsup_video import data as D

B, T = 8, 20
HAS_TF = importlib.util.find_spec('tensorflow') is not None


@pytest.fixture(scope='module')
def digits():
  return D.embedded_digits(40, seed=0)


@pytest.fixture(scope='module')
def seq(digits):
  return D.moving_mnist_with_positions(jax.random.PRNGKey(0), digits[0], B)


# --------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------

def test_shapes_range_and_determinism(digits, seq):
  frames, pos = (np.asarray(a) for a in seq)
  assert frames.shape == (B, T, 64, 64) and frames.dtype == np.float32
  assert pos.shape == (B, T, 2, 2)
  assert frames.min() >= 0 and frames.max() <= 1 and frames.max() > 0.9
  np.testing.assert_array_equal(D.moving_mnist(jax.random.PRNGKey(0), digits[0], B), frames)
  other = np.asarray(D.moving_mnist(jax.random.PRNGKey(1), digits[0], B))
  assert not np.array_equal(other, frames)
  assert np.all(pos >= 0) and np.all(pos <= 36)


def test_frame_is_max_of_digits_at_integer_positions(digits, seq):
  frames, pos = (np.asarray(a) for a in seq)
  imgs = digits[0]
  for b in range(2):
    for t in (0, 7, 19):
      # Find which digits were drawn: the only images that reproduce the frame.
      canvases = []
      rc = np.round(pos[b, t]).astype(int)
      for d in range(2):
        match = []
        for img in imgs:
          c = np.zeros((64, 64), np.float32)
          c[rc[d, 0]:rc[d, 0] + 28, rc[d, 1]:rc[d, 1] + 28] = img
          match.append(c)
        canvases.append(match)
      ok = any(np.array_equal(np.maximum(a, c), frames[b, t])
               for a in canvases[0] for c in canvases[1])
      assert ok, (b, t)


def test_draw_max_combines_overlaps():
  a = np.zeros((28, 28), np.float32)
  a[:, :14] = 0.3
  c = np.full((28, 28), 0.5, np.float32)
  c[0, 0] = 0.1
  frame = np.asarray(D.draw(np.stack([a, c]), np.array([[10, 10], [10, 10]]), 64))
  np.testing.assert_allclose(frame[10:38, 10:38], np.maximum(a, c))
  np.testing.assert_array_equal(frame[:10], 0)
  # Overlapping 8x8 corner: the second digit's dim pixel (0.1) loses to the first's 0.5.
  frame = np.asarray(D.draw(np.stack([c, c]), np.array([[0, 0], [20, 20]]), 64))
  assert frame[0, 0] == 0.1 and frame[20, 20] == 0.5 and frame[47, 47] == 0.5
  expected = np.zeros((64, 64), np.float32)
  expected[:28, :28] = c
  expected[20:48, 20:48] = np.maximum(expected[20:48, 20:48], c)
  np.testing.assert_array_equal(frame, expected)


def test_speed_constant_between_walls(seq):
  _, pos = (np.asarray(a) for a in seq)
  step = np.linalg.norm(np.diff(pos, axis=1), axis=-1)     # (B, T - 1, 2)
  inside = (pos[:, 1:] > 3.6).all(-1) & (pos[:, 1:] < 36 - 3.6).all(-1) \
      & (pos[:, :-1] > 3.6).all(-1) & (pos[:, :-1] < 36 - 3.6).all(-1)
  assert inside.sum() > 20
  np.testing.assert_allclose(step[inside], 0.1 * 36, rtol=1e-5)


def test_bounce_reflects_at_walls():
  # Start near the top-right corner moving up and right at 3.6 px per frame.
  pos0 = np.array([[2.0, 34.0]], np.float32)
  vel0 = np.array([[-3.6 * 0.6, 3.6 * 0.8]], np.float32)
  pos, vel = (np.asarray(a) for a in D.bounce(pos0, vel0, 30, 36.0))
  assert pos.shape == vel.shape == (30, 1, 2)
  np.testing.assert_allclose(pos[0], pos0)
  # Row: 2 - 2.16 = -0.16 -> 0.16, flips to moving down; col: 34 + 2.88 = 36.88 -> 35.12.
  np.testing.assert_allclose(pos[1, 0], [0.16, 35.12], atol=1e-5)
  np.testing.assert_allclose(vel[1, 0], [2.16, -2.88], atol=1e-6)
  assert np.all(pos >= 0) and np.all(pos <= 36)
  np.testing.assert_allclose(np.linalg.norm(vel, axis=-1), 3.6, rtol=1e-6)
  # Each component flips exactly when a wall would have been crossed.
  free = pos[:-1] + vel[:-1]
  crossed = (free < 0) | (free > 36)
  np.testing.assert_array_equal(np.sign(vel[1:]) != np.sign(vel[:-1]), crossed)
  assert crossed[..., 0].sum() >= 2 and crossed[..., 1].sum() >= 2


def test_fixed_test_set_deterministic_and_prefix(digits):
  a = D.fixed_test_set(digits[0], 5, seed=3, num_frames=4)
  assert a.shape == (5, 4, 64, 64) and isinstance(a, np.ndarray)
  np.testing.assert_array_equal(a, D.fixed_test_set(digits[0], 5, seed=3, num_frames=4))
  np.testing.assert_array_equal(D.fixed_test_set(digits[0], 3, seed=3, num_frames=4), a[:3])
  assert not np.array_equal(D.fixed_test_set(digits[0], 5, seed=4, num_frames=4), a)
  train = np.asarray(D.moving_mnist(jax.random.PRNGKey(3), digits[0], 5, num_frames=4))
  assert not np.array_equal(train, a)
  with pytest.raises(ValueError, match='num'):
    D.fixed_test_set(digits[0], 0)


def test_batch_of_80_timing(digits):
  key = jax.random.PRNGKey(0)
  D.moving_mnist(key, digits[0], 80).block_until_ready()
  start = time.perf_counter()
  D.moving_mnist(jax.random.PRNGKey(1), digits[0], 80).block_until_ready()
  print(f'\n80 x 20 frames of 64x64 after compile: {1e3 * (time.perf_counter() - start):.1f} ms')


# --------------------------------------------------------------------------
# Embedded digits
# --------------------------------------------------------------------------

def test_embedded_digits(digits):
  x, labels = digits
  assert x.shape == (40, 28, 28) and x.dtype == np.float32
  assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.99
  np.testing.assert_array_equal(labels, np.arange(40) % 10)
  np.testing.assert_array_equal(D.embedded_digits(12, seed=0)[0], x[:12])
  assert not np.allclose(D.embedded_digits(12, seed=1)[0], x[:12])
  # MNIST-like: ink centred by mass, inside the central 20x20-ish box, a fair amount of it.
  c = np.arange(28) + 0.5
  mass = x.sum((1, 2))
  com_r = (x.sum(2) * c).sum(1) / mass
  com_c = (x.sum(1) * c).sum(1) / mass
  np.testing.assert_allclose(com_r, 14, atol=0.6)
  np.testing.assert_allclose(com_c, 14, atol=0.6)
  ring = x.copy()
  ring[:, 1:-1, 1:-1] = 0
  assert np.all(ring == 0)          # the outer pixel ring stays empty
  ring = x.copy()
  ring[:, 2:-2, 2:-2] = 0
  assert np.all(ring.sum((1, 2)) < 0.05 * x.sum((1, 2)))
  assert np.all((mass > 40) & (mass < 250))
  # Ten distinct classes: each class mean is closer to itself than to the others.
  means = np.stack([x[labels == k].mean(0) for k in range(10)])
  dist = np.linalg.norm(means[:, None] - means[None], axis=(-1, -2))
  assert dist[~np.eye(10, dtype=bool)].min() > 1.0


# --------------------------------------------------------------------------
# MNIST through TFDS, digit sources
# --------------------------------------------------------------------------

def _known_images(requested):
  def as_data_source(self, split, *args, **kwargs):
    requested.append(split)
    image = np.zeros((28, 28, 1), np.uint8)
    image[3, 5] = 255
    image[10, :] = 51
    return [{'image': image, 'label': 1}, {'image': 255 - image, 'label': 2}]
  return as_data_source


def test_mnist_digits_through_tfds_data_source():
  with tfds.testing.mock_data(num_examples=6):
    x = D.mnist_digits('train')
  assert x.shape == (6, 28, 28) and x.dtype == np.float32
  assert x.min() >= 0 and x.max() <= 1
  requested = []
  with tfds.testing.mock_data(as_data_source_fn=_known_images(requested)):
    x = D.mnist_digits('test')
  assert requested == ['test']
  assert x.shape == (2, 28, 28)
  assert x[0, 3, 5] == 1.0 and x[0, 10, 0] == pytest.approx(0.2) and x[0, 0, 0] == 0
  np.testing.assert_allclose(x[1], 1 - x[0], atol=1e-6)


def test_mnist_not_prepared_and_sources(tmp_path, monkeypatch):
  with pytest.raises(FileNotFoundError, match='tfds build mnist'):
    D.mnist_digits('train', data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match='tfds build mnist'):
    D.load_digits('mnist', data_dir=str(tmp_path))
  # With no data_dir and nothing in the default one, TFDS raises KeyError (empty splits).
  monkeypatch.setattr(tfds.core.constants, 'DATA_DIR', str(tmp_path / 'default'))
  with pytest.raises(FileNotFoundError, match='tfds build mnist'):
    D.load_digits('mnist')
  np.testing.assert_array_equal(D.load_digits('auto')[:5], D.embedded_digits(5, seed=0)[0])
  # 'auto' falls back to the embedded digits when MNIST is not prepared ...
  auto = D.load_digits('auto', data_dir=str(tmp_path))
  np.testing.assert_array_equal(auto[:20], D.embedded_digits(20, seed=0)[0])
  # ... and uses MNIST when it is.
  requested = []
  with tfds.testing.mock_data(as_data_source_fn=_known_images(requested)):
    auto = D.load_digits('auto', data_dir=str(tmp_path))
  assert auto.shape == (2, 28, 28) and requested == ['train']
  with pytest.raises(ValueError, match='embedded, mnist, auto'):
    D.load_digits('emnist')


# --------------------------------------------------------------------------
# Standard test set
# --------------------------------------------------------------------------

def test_load_test_npy_transposes_and_scales(tmp_path):
  raw = np.zeros((20, 3, 64, 64), np.uint8)
  for t in range(20):
    for n in range(3):
      raw[t, n, t, n] = 255
      raw[t, n, 63, 63] = 10 * t + n
  path = tmp_path / 'mnist_test_seq.npy'
  np.save(path, raw)
  x = D.load_test_npy(str(path))
  assert x.shape == (3, 20, 64, 64) and x.dtype == np.float32
  for t in range(20):
    for n in range(3):
      assert x[n, t, t, n] == 1.0
      assert x[n, t, 63, 63] == pytest.approx((10 * t + n) / 255)
  np.testing.assert_array_equal(D.load_test_npy(str(path), num=2), x[:2])
  with pytest.raises(FileNotFoundError, match='mnist_test_seq.npy'):
    D.load_test_npy(str(tmp_path / 'mnist_test_seq.npy.missing'))


@pytest.mark.skipif(HAS_TF, reason='TensorFlow is installed: the loader runs instead')
def test_load_test_tfds_without_tensorflow_says_what_to_install():
  with pytest.raises(ImportError, match=r'needs TensorFlow.*\.\[data\]'):
    D.load_test_tfds()


@pytest.mark.skipif(not HAS_TF, reason='needs TensorFlow (the data extra)')
def test_load_test_tfds_with_mock_data():
  with tfds.testing.mock_data(num_examples=3):
    x = D.load_test_tfds()
  assert x.shape == (3, 20, 64, 64) and x.dtype == np.float32
  assert x.min() >= 0 and x.max() <= 1
