"""selfsup data: the synthetic classes against hand-placed shapes and textures and against
geometry, what of an image the label decides (and what it does not), the generated sets, and the
Imagewang loaders on a TFDS mock and on files the tests make."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from scipy import ndimage

from selfsup import data as D

LUMA = np.array([0.299, 0.587, 0.114])
render = jax.jit(D.render, static_argnums=1)     # one compile per size, not one op at a time


def _params(shape, texture='striped', **changes):
  """A hand-placed image: a white shape with black texture marks on plain grey, no noise."""
  p = {
      'shape': jnp.int32(D.SHAPES.index(shape)), 'texture': jnp.int32(D.TEXTURES.index(texture)),
      'centre': jnp.array([32.5, 32.5]) / 64,       # the centre of pixel (32, 32) at size 64
      'radius': jnp.float32(0.3), 'angle': jnp.float32(0.0),
      'colour': jnp.ones(3), 'colour2': jnp.zeros(3), 'background': jnp.full(3, 0.5),
      'period': jnp.float32(0.125), 'mark': jnp.float32(0.5),
      'texture_angle': jnp.float32(0.0), 'texture_phase': jnp.zeros(2),
      'background_amplitude': jnp.float32(0.0), 'background_frequency': jnp.float32(1.0),
      'background_angle': jnp.float32(0.0), 'background_phase': jnp.float32(0.0),
      'noise': jnp.float32(0.0), 'noise_key': jax.random.PRNGKey(0),
  }
  p.update({k: jnp.asarray(v, p[k].dtype) for k, v in changes.items()})
  return p


def test_classes_are_shape_times_texture():
  assert D.NUM_CLASSES == len(D.CLASSES) == 10 and len(set(D.CLASSES)) == 10
  p = jax.jit(jax.vmap(D.sample_params, (None, 0)))(jax.random.PRNGKey(0), jnp.arange(10))
  for label, name in enumerate(D.CLASSES):
    assert name == f'{D.TEXTURES[int(p["texture"][label])]} {D.SHAPES[int(p["shape"][label])]}'
  assert D.SOURCES == ('synthetic', 'imagewang')


def test_render_shapes_at_hand_placed_pixels():
  # Radius 0.3 at 64 px is 19.2 px; offsets of 12 and 17 px are 0.625 and 0.885 radii.
  # (row, col) offsets: the centre, the diagonal, straight down, straight up.
  points = [(0, 0), (12, 12), (17, 0), (-17, 0)]
  expected = {'circle': [1, 1, 1, 1], 'square': [1, 1, 0, 0], 'triangle': [1, 0, 1, 0],
              'plus': [1, 0, 1, 1], 'ring': [0, 1, 1, 1]}
  for shape, inside in expected.items():
    image, mask = render(_params(shape), 64)
    image, mask = np.asarray(image), np.asarray(mask)
    assert image.shape == (64, 64, 3) and mask.shape == (64, 64), shape
    assert [mask[32 + dr, 32 + dc] for dr, dc in points] == inside, shape
    for corner in [(0, 0), (0, 63), (63, 0), (63, 63)]:
      assert mask[corner] == 0 and np.all(image[corner] == 0.5), shape
  # Turned half a turn, the triangle points the other way.
  _, mask = render(_params('triangle', angle=np.pi), 64)
  assert [mask[32 + dr, 32 + dc] for dr, dc in points] == [1, 0, 0, 1]


def test_mask_areas_match_the_geometry():
  ring, arm, rho = D.RING_INNER, D.PLUS_ARM, D.TRIANGLE_INRADIUS
  area = {'circle': np.pi, 'square': 1.6**2, 'triangle': 3 * np.sqrt(3) * rho**2,
          'plus': 2 * (2 * 2 * arm) - (2 * arm)**2, 'ring': np.pi * (1 - ring**2)}
  for shape, a in area.items():
    _, mask = render(_params(shape, centre=[0.5, 0.5], angle=0.3), 128)
    measured = float(np.asarray(mask).sum()) / 128**2 / 0.3**2
    assert abs(measured - a) < 0.02 * a, (shape, measured, a)
  # Edges are anti-aliased: partly covered pixels, only along the outline.
  mask = np.asarray(render(_params('circle'), 64)[1])
  partial = (mask > 0) & (mask < 1)
  assert 0 < partial.sum() < 2 * np.pi * 19.2 * 1.5


def test_stripes_alternate_along_their_normal_and_dots_do_not():
  # Period 8 px, marks half of it, along x: columns 0-3 of every 8 are black marks, 4-7 white.
  p = _params('square', radius=0.45, centre=[0.5, 0.5])
  image = np.asarray(render(p, 64)[0])[..., 0]
  inside = image[16:48, 16:48]     # the square's half side is 0.8 * 0.45 * 64 = 23 px
  expected = np.where(np.arange(16, 48) % 8 < 4, 0.0, 1.0)
  np.testing.assert_allclose(inside, np.broadcast_to(expected, inside.shape), atol=1e-6)
  # Turned a quarter turn the stripes run along the rows instead.
  turned = np.asarray(render({**p, 'texture_angle': jnp.float32(np.pi / 2)}, 64)[0])[..., 0]
  np.testing.assert_allclose(turned[16:48, 16:48], inside.T, atol=1e-5)
  # Dots of diameter 0.62 periods (4.96 px) on the lattice of points (8i, 8j) px.
  dots = np.asarray(render({**p, 'texture': jnp.int32(1)}, 64)[0])[..., 0]
  assert dots[24, 24] == 0 and dots[24, 23] == 0 and dots[23, 24] == 0   # around (24, 24) px
  assert dots[28, 28] == 1 and dots[24, 28] == 1                          # between dots
  assert np.all(dots[28, 16:48] == 1) and 0 < dots[24, 16:48].mean() < 1  # rows differ
  assert abs((1 - dots[16:48, 16:48]).mean() - np.pi * 2.48**2 / 64) < 0.02   # dark: dot area


def test_what_the_label_decides():
  # One key, every label: the nuisance (colours, place, background, noise) is shared, so the
  # images agree outside the shapes, each shape is drawn by two labels, and the textures differ.
  key = jax.random.PRNGKey(11)
  labels = jnp.arange(10, dtype=jnp.int32)
  params = jax.vmap(D.sample_params, (None, 0))(key, labels)
  images, masks = jax.jit(jax.vmap(lambda q: D.render(q, 64)))(params)
  images, masks = np.asarray(images), np.asarray(masks)
  outside = masks.max(0) == 0
  assert outside.mean() > 0.3
  np.testing.assert_array_equal(images[:, outside], np.broadcast_to(images[0, outside],
                                                                    images[:, outside].shape))
  for s in range(5):
    np.testing.assert_array_equal(masks[2 * s], masks[2 * s + 1])
    assert not np.allclose(images[2 * s], images[2 * s + 1])
    for t in range(s):
      assert np.abs(masks[2 * s] - masks[2 * t]).mean() > 0.02, (s, t)


def _coherence(grey, mask):
  """How much one orientation dominates the image gradients inside the shape (structure
  tensor): near 1 for stripes, low for dots."""
  gy, gx = np.gradient(ndimage.gaussian_filter(grey, 0.7))
  inner = ndimage.binary_erosion(mask > 0.99, iterations=2)
  jxx, jyy, jxy = (gx * gx)[inner].sum(), (gy * gy)[inner].sum(), (gx * gy)[inner].sum()
  return np.sqrt((jxx - jyy)**2 + 4 * jxy**2) / (jxx + jyy)


def test_random_images_show_their_texture_and_keep_contrast():
  n = 200
  labels = jnp.arange(n, dtype=jnp.int32) % 10
  params = jax.jit(jax.vmap(D.sample_params))(jax.random.split(jax.random.PRNGKey(5), n), labels)
  images, masks = jax.jit(jax.vmap(lambda q: D.render(q, 32)))(params)
  images, masks = np.asarray(images), np.asarray(masks)
  coherence = np.array([_coherence(g, m) for g, m in zip(images @ LUMA, masks)])
  striped = np.asarray(labels) % 2 == 0
  assert coherence[striped].min() > 0.9
  assert ((coherence > 0.8) == striped).mean() >= 0.97
  # The ground, the fill and its marks are apart in luma whatever the hues; shapes stay inside.
  lumas = {k: np.asarray(params[k]) @ LUMA for k in ('colour', 'colour2', 'background')}
  for a, b in [('colour', 'colour2'), ('colour', 'background'), ('colour2', 'background')]:
    assert np.abs(lumas[a] - lumas[b]).min() > 0.19, (a, b)
  assert 0.3 < (lumas['colour'] > lumas['background']).mean() < 0.7    # both polarities
  for k in ('colour', 'colour2', 'background'):
    assert np.asarray(params[k]).min() >= 0 and np.asarray(params[k]).max() <= 1
  assert (masks.sum((1, 2)) / (np.pi * (32 * np.asarray(params['radius']))**2)).min() > 0.4
  centre, radius = np.asarray(params['centre']), np.asarray(params['radius'])[:, None]
  assert np.all((centre >= 0.9 * radius - 1e-6) & (centre <= 1 - 0.9 * radius + 1e-6))
  assert images.min() >= 0 and images.max() <= 1


def test_synthetic_image_traces_the_label():
  f = jax.jit(D.synthetic_image, static_argnums=2)
  key = jax.random.PRNGKey(2)
  a, b = f(key, jnp.int32(0), 16), f(key, jnp.int32(1), 16)     # the smallest size
  assert a.shape == (16, 16, 3) and a.dtype == jnp.float32 and not np.allclose(a, b)
  assert float(a.min()) >= 0 and float(a.max()) <= 1
  np.testing.assert_array_equal(a, f(key, jnp.int32(0), 16))


def test_synthetic_sets_are_balanced_and_deterministic():
  key = jax.random.PRNGKey(0)
  d = D.synthetic(key, 40, 32)
  assert d['image'].shape == (40, 32, 32, 3) and d['image'].dtype == np.uint8
  assert d['label'].shape == (40,) and d['label'].dtype == np.int32
  np.testing.assert_array_equal(np.bincount(d['label'], minlength=10), np.full(10, 4))
  assert list(d['label'][:10]) != list(range(10))        # permuted
  again = D.synthetic(key, 40, 32)
  np.testing.assert_array_equal(d['image'], again['image'])
  np.testing.assert_array_equal(d['label'], again['label'])
  other = D.synthetic(jax.random.PRNGKey(1), 40, 32)
  assert not np.array_equal(d['image'], other['image'])
  assert d['image'].max() > 200 and d['image'].min() < 50
  # Chunks wrap round: an n that is not a power of two gives as many distinct images.
  odd = D.synthetic(key, 19, 32)
  assert odd['image'].shape == (19, 32, 32, 3)
  assert len({im.tobytes() for im in odd['image']}) == 19
  with pytest.raises(ValueError, match='size >= 16'):
    D.synthetic(key, 4, 8)


def test_embedded_draws_are_disjoint_and_independent_of_each_other():
  e = D.embedded(3, 32, 20, 10, 30)
  (xt, yt), (xv, yv), xu = e['train'], e['val'], e['unlabelled']
  assert xt.shape == (20, 32, 32, 3) and yt.shape == (20,) and xt.dtype == np.uint8
  assert xv.shape == (10, 32, 32, 3) and yv.shape == (10,) and xu.shape == (30, 32, 32, 3)
  np.testing.assert_array_equal(np.bincount(yt, minlength=10), np.full(10, 2))
  seen = [{im.tobytes() for im in x} for x in (xt, xv, xu)]
  assert [len(s) for s in seen] == [20, 10, 30]
  assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
  # Each draw has its own stream: changing one size leaves the others as they were.
  f = D.embedded(3, 32, 20, 10, 14)
  np.testing.assert_array_equal(f['train'][0], xt)
  np.testing.assert_array_equal(f['val'][1], yv)
  assert not np.array_equal(D.embedded(4, 32, 20, 10, 30)['train'][0], xt)


def test_to_float():
  x = D.to_float(np.array([0, 128, 255], np.uint8))
  assert x.dtype == jnp.float32
  np.testing.assert_allclose(x, [0.0, 128 / 255, 1.0], rtol=1e-6)


def _two_images(requested):
  def as_data_source(self, split, *args, **kwargs):
    requested.append((self.name, split))
    return [{'image': np.full((30, 20, 3), 200, np.uint8), 'label': 3},
            {'image': np.full((10, 12, 3), 50, np.uint8), 'label': 17}]
  return as_data_source


def test_load_imagewang_from_a_tfds_mock():
  with tfds.testing.mock_data(num_examples=6):
    x, y, n = D.load_imagewang('imagewang/160px', 'train', 16)
    xv, yv, nv = D.load_imagewang('imagewang/320px', 'validation', 24, num=4)
  assert x.shape == (6, 16, 16, 3) and x.dtype == np.uint8
  assert y.shape == (6,) and y.dtype == np.int32 and n == 20    # TFDS's own class count
  assert y.min() >= 0 and y.max() < 20
  assert xv.shape == (4, 24, 24, 3) and yv.shape == (4,) and nv == 20
  requested = []
  with tfds.testing.mock_data(as_data_source_fn=_two_images(requested)):
    x, y, n = D.load_imagewang('imagewang/160px', 'train[:50%]', 8)
  assert requested == [('imagewang', 'train[:50%]')]
  assert np.all(x[0] == 200) and np.all(x[1] == 50)
  assert list(y) == [3, 17] and n == 18       # no recorded count: the largest label + 1
  with pytest.raises(ValueError, match='unknown Imagewang split.*train, validation'):
    D.load_imagewang('imagewang/160px', 'test', 8)


def test_load_unlabelled_reads_every_image_under_the_folder(tmp_path):
  (tmp_path / 'n01').mkdir()
  Image.fromarray(np.full((23, 37, 3), 40, np.uint8)).save(tmp_path / 'n01' / 'a.JPEG')
  Image.fromarray(np.full((31, 17), 90, np.uint8)).save(tmp_path / 'n01' / 'b.png')    # grey
  rgba = np.zeros((20, 20, 4), np.uint8)
  rgba[..., 0], rgba[..., 3] = 250, 255
  Image.fromarray(rgba).save(tmp_path / 'c.png')
  (tmp_path / 'labels.csv').write_text('not an image')
  x = D.load_unlabelled(str(tmp_path), 16)
  assert x.shape == (3, 16, 16, 3) and x.dtype == np.uint8
  # Sorted paths: c.png, n01/a.JPEG, n01/b.png.
  np.testing.assert_array_equal(x[0, 8, 8], [250, 0, 0])
  assert np.abs(x[1].astype(int) - 40).max() <= 2                # JPEG: nearly exact
  assert np.all(x[2] == 90)
  assert D.load_unlabelled(str(tmp_path), 16, num=2).shape == (2, 16, 16, 3)
  with pytest.raises(FileNotFoundError, match='nowhere'):
    D.load_unlabelled(str(tmp_path / 'nowhere'), 16)
