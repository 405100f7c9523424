"""Tests for the VRNN's generated handwriting."""

import jax
import numpy as np
import pytest

from vrnn import strokes as S

N, T = 32, 256   # one compiled generator shape for every synthetic test


@pytest.fixture(scope='module')
def lines():
  return S.handwriting(jax.random.PRNGKey(0), N, T)


# --------------------------------------------------------------------------
# Generated handwriting
# --------------------------------------------------------------------------

def test_handwriting_shapes_and_determinism(lines):
  assert lines['x'].shape == (N, T, 3) and lines['x'].dtype == np.float32
  assert lines['mask'].shape == (N, T) and lines['mask'].dtype == np.float32
  assert lines['text'].dtype == np.int32 and lines['text'].shape == (N, 3 * 5 + 2)
  again = S.handwriting(jax.random.PRNGKey(0), N, T)
  for k in ('x', 'mask', 'text'):
    np.testing.assert_array_equal(lines[k], again[k])
  other = S.handwriting(jax.random.PRNGKey(1), N, T)
  assert not np.array_equal(lines['text'], other['text'])
  assert not np.allclose(lines['x'][:, :20], other['x'][:, :20])
  # Typed keys give the same lines; a smaller set is a prefix of a larger one.
  np.testing.assert_array_equal(S.handwriting(jax.random.key(0), N, T)['x'], lines['x'])
  np.testing.assert_array_equal(S.handwriting(jax.random.PRNGKey(0), 5, T)['x'], lines['x'][:5])


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
    s = S.text_to_string(text)
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
  small = S.handwriting(key, N, T, size=(5.0, 5.0), speed=(0.5, 0.5), **fixed)
  big = S.handwriting(key, N, T, size=(10.0, 10.0), speed=(0.5, 0.5), **fixed)
  fast = S.handwriting(key, N, T, size=(5.0, 5.0), speed=(1.0, 1.0), **fixed)
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
  short = S.handwriting(jax.random.PRNGKey(0), N, 32)
  np.testing.assert_array_equal(short['mask'], 1.0)
  np.testing.assert_array_equal(short['x'][:, -1, 2], 1.0)
  # Not the same program (max_len is static), but the same writing.
  np.testing.assert_allclose(short['x'][:, :-1], lines['x'][:, :31], atol=1e-4)
  with pytest.raises(ValueError, match='unknown style'):
    S.handwriting(jax.random.PRNGKey(0), 2, 16, colour=(0, 1))
  with pytest.raises(ValueError, match='lo <= hi'):
    S.handwriting(jax.random.PRNGKey(0), 2, 16, size=(2.0, 1.0))
