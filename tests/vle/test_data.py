"""VLE data: the scene generator's masks against hand-placed shapes, its randomness, image
entropy, and batches drawn from a real-image pool."""
import jax
import jax.numpy as jnp
import numpy as np

from vle import data as D


def _scene(kinds, centres, radii, colours, present=None, angles=None, textured=0.0):
  n = len(kinds)
  return {
      'kind': jnp.asarray([D.SHAPES.index(k) for k in kinds]),
      'centre': jnp.asarray(centres, jnp.float32),
      'radius': jnp.asarray(radii, jnp.float32),
      'angle': jnp.zeros(n) if angles is None else jnp.asarray(angles, jnp.float32),
      'colour': jnp.asarray(colours, jnp.float32),
      'present': jnp.ones(n, bool) if present is None else jnp.asarray(present),
      'background': {'colour': jnp.array([0.1, 0.2, 0.3]), 'colour2': jnp.array([0.5, 0.5, 0.5]),
                     'textured': jnp.float32(textured), 'frequency': jnp.float32(2.0),
                     'angle': jnp.float32(0.0), 'phase': jnp.float32(0.0)},
  }


def test_render_places_shapes_where_they_are_and_later_ones_occlude():
  red, green = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
  # A circle of radius 8 px centred at (x=16, y=16) on 64 px; a square over its right half.
  s = _scene(['circle', 'square'], [[0.25, 0.25], [0.375, 0.25]], [0.125, 0.0625], [red, green])
  image, seg = D.render(s, 64)
  image, seg = np.asarray(image), np.asarray(seg)
  assert seg.shape == (64, 64) and seg.dtype == np.int32
  # Pixel centres (i + 0.5) / 64: row 16 / col 10 is 5.5 px left of the circle's centre.
  assert seg[16, 10] == 1 and np.allclose(image[16, 10], red)
  assert seg[16, 24] == 2 and np.allclose(image[16, 24], green)   # the square is on top
  assert seg[16, 3] == 0 and np.allclose(image[16, 3], [0.1, 0.2, 0.3])   # plain background
  assert seg[30, 16] == 0    # 14 px below the centre: outside the circle
  # The circle covers ~pi r^2 pixels; the square (half side 0.8 * 4 px) 6.4^2, on top of it.
  assert abs((seg == 2).sum() - 6.4**2) < 12
  assert abs((seg > 0).sum() - np.pi * 8**2) < 30
  # Each pixel's colour is its label's colour.
  colours = np.array([[0.1, 0.2, 0.3], red, green])
  np.testing.assert_allclose(image, colours[seg], atol=1e-6)


def test_render_shape_kinds_and_absent_objects():
  s = _scene(['triangle', 'diamond', 'ring'], [[0.5, 0.5], [0.2, 0.8], [0.8, 0.2]],
             [0.2, 0.1, 0.15], np.eye(3), present=[True, True, False])
  _, seg = D.render(s, 64)
  seg = np.asarray(seg)
  assert set(np.unique(seg)) == {0, 1, 2}          # the absent ring is not drawn
  # Triangle (radius 12.8 px, apex up since v points down the rows... up to orientation):
  # its centroid is inside, a point 0.9 r to the side at the centre's row is outside.
  assert seg[32, 32] == 1 and seg[32, 32 + 12] == 0
  # Diamond at (x=12.8, y=51.2), radius 6.4: |u| + |v| <= 1.
  assert seg[51, 12] == 2 and seg[51 - 5, 12 - 5] == 0
  ring = _scene(['ring'], [[0.5, 0.5]], [0.25], [[1, 1, 1]])
  _, rs = D.render(ring, 64)
  rs = np.asarray(rs)
  assert rs[32, 32] == 0 and rs[32, 32 + 14] == 1 and rs[32, 32 + 18] == 0   # hole, band, out


def test_textured_background_varies_and_plain_does_not():
  plain = np.asarray(D.render(_scene(['circle'], [[0.5, 0.5]], [0.1], [[1, 0, 0]]), 32)[0])
  tex = np.asarray(D.render(_scene(['circle'], [[0.5, 0.5]], [0.1], [[1, 0, 0]],
                                   textured=1.0), 32)[0])
  assert np.ptp(plain[0], axis=0).max() == 0
  assert np.ptp(tex[0], axis=0).max() > 0.1
  assert tex.min() >= 0 and tex.max() <= 1


def test_scenes_are_deterministic_with_partitioning_masks():
  key = jax.random.PRNGKey(3)
  b = D.scenes(key, 32, 32, max_objects=5, min_objects=2)
  again = D.scenes(key, 32, 32, max_objects=5, min_objects=2)
  jax.tree.map(np.testing.assert_array_equal, b, again)
  other = D.scenes(jax.random.PRNGKey(4), 32, 32, max_objects=5, min_objects=2)
  assert not np.allclose(b['image'], other['image'])
  n, seg = np.asarray(b['num_objects']), np.asarray(b['segmentation'])
  assert n.min() >= 2 and n.max() <= 5 and len(set(n)) > 1
  assert b['image'].shape == (32, 32, 32, 3)
  assert float(b['image'].min()) >= 0 and float(b['image'].max()) <= 1
  # Labels never exceed the number of objects drawn; the masks partition every image.
  assert np.all(seg.reshape(32, -1).max(-1) <= n)
  masks = np.asarray(D.object_masks(b['segmentation'], 5))
  assert masks.shape == (32, 6, 32, 32)
  np.testing.assert_array_equal(masks.sum(1), 1.0)
  # Inside each object's mask all pixels share one colour (objects are flat-coloured).
  img = np.asarray(b['image'])
  for i in range(4):
    for k in range(1, n[i] + 1):
      px = img[i][seg[i] == k]
      if len(px):
        assert np.ptp(px, axis=0).max() < 1e-6


def test_plain_and_textured_scene_options():
  plain = D.scenes(jax.random.PRNGKey(0), 8, 32, background='plain', shapes=('square',))
  img, seg = np.asarray(plain['image']), np.asarray(plain['segmentation'])
  for i in range(8):
    bg = img[i][seg[i] == 0]
    assert np.ptp(bg, axis=0).max() < 1e-6
  tex = D.scenes(jax.random.PRNGKey(0), 8, 32, background='textured')
  img, seg = np.asarray(tex['image']), np.asarray(tex['segmentation'])
  assert all(np.ptp(img[i][seg[i] == 0], axis=0).max() > 0.01 for i in range(8))


def test_hsv_to_rgb_primaries():
  rgb = np.asarray(D.hsv_to_rgb(jnp.array([0.0, 1 / 3, 2 / 3, 0.5]), jnp.ones(4),
                                jnp.array([1.0, 1.0, 0.5, 1.0])))
  np.testing.assert_allclose(rgb, [[1, 0, 0], [0, 1, 0], [0, 0, 0.5], [0, 1, 1]], atol=1e-6)
  grey = np.asarray(D.hsv_to_rgb(jnp.array(0.3), jnp.array(0.0), jnp.array(0.4)))
  np.testing.assert_allclose(grey, [0.4] * 3, atol=1e-6)


def test_image_entropy_by_hand():
  flat = np.full((4, 4, 3), 0.5)
  half = np.zeros((4, 4, 3))
  half[:2] = 1.0
  quarters = np.zeros((4, 4, 3))
  for q, v in enumerate([0.0, 0.25, 0.5, 1.0]):
    quarters[q] = v
  np.testing.assert_allclose(D.image_entropy(np.stack([flat, half, quarters])), [0, 1, 2])


# --------------------------------------------------------------------------
# Real images (the loaders themselves: tests/common/test_images.py)
# --------------------------------------------------------------------------

def test_real_image_loaders_are_the_common_ones():
  from common import images  # pylint: disable=g-import-not-at-top
  for name in ('IMAGE_EXTENSIONS', 'resize_and_crop', 'load_tfds', 'folder_files', 'load_folder'):
    assert getattr(D, name) is getattr(images, name)


def test_random_batch_draws_and_flips_from_the_pool():
  pool = np.zeros((3, 4, 4, 3), np.uint8)
  for i in range(3):
    pool[i, :, :2] = 51 * (i + 1)     # left half lit, a different level per image
  batch = np.asarray(D.random_batch(jax.random.PRNGKey(0), jnp.asarray(pool), 64))
  assert batch.shape == (64, 4, 4, 3) and batch.dtype == np.float32
  levels = np.round(batch.max((1, 2, 3)) * 5).astype(int)
  assert set(levels) == {1, 2, 3}
  flipped = batch[:, 0, 0, 0] == 0
  assert 10 < flipped.sum() < 54
  np.testing.assert_array_equal(batch[flipped][:, :, ::-1] > 0, batch[~flipped][:1].repeat(
      flipped.sum(), 0) > 0)
