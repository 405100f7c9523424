"""Images for VLE: synthetic multi-object scenes with their true object masks, generated in JAX,
and real images from a TFDS dataset or a local folder.

A scene is drawn in two steps, both pure: `sample_scene` draws the parameters of up to
`max_objects` shapes and a background from a key, `render` paints them in order (later objects
occlude earlier ones) and returns the image with the label of the object seen at each pixel
(0 = background). The true masks are `one_hot(segmentation)`.
"""
import jax
import jax.numpy as jnp
import numpy as np

from common.images import (  # noqa: F401  (re-exported: vle's callers and tests use vle.data)
    IMAGE_EXTENSIONS, folder_files, load_folder, load_tfds, resize_and_crop)

SHAPES = ('circle', 'square', 'triangle', 'diamond', 'ring')
BACKGROUNDS = ('plain', 'textured', 'mixed')
SOURCES = ('scenes', 'tfds', 'folder')
SQRT3 = 3.0 ** 0.5


# ===========================================================================
# Synthetic scenes
# ===========================================================================

def hsv_to_rgb(h, s, v):
  """h, s, v in [0, 1] (any matching shapes) -> (..., 3) RGB in [0, 1]."""
  k = jnp.stack([5.0, 3.0, 1.0])
  t = jnp.mod(k + 6.0 * jnp.asarray(h)[..., None], 6.0)
  return v[..., None] - (v * s)[..., None] * jnp.clip(jnp.minimum(t, 4.0 - t), 0.0, 1.0)


def inside(kind, u, v):
  """Whether local coordinates (u, v) (the shape's frame, unit size) lie inside shape `kind`."""
  r2 = u * u + v * v
  tests = jnp.stack([
      r2 <= 1.0,                                                        # circle
      jnp.maximum(jnp.abs(u), jnp.abs(v)) <= 0.8,                       # square
      (v >= -0.5) & (SQRT3 * u + v <= 1.0) & (-SQRT3 * u + v <= 1.0),  # triangle
      jnp.abs(u) + jnp.abs(v) <= 1.0,                                   # diamond
      (r2 <= 1.0) & (r2 >= 0.3),                                        # ring
  ])
  return tests[kind]


def render(scene, size):
  """Paints a scene. Returns (image (size, size, 3) float32 in [0, 1], segmentation (size, size)
  int32: 0 for background, i + 1 where object i is the one in front)."""
  grid = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size
  y, x = jnp.meshgrid(grid, grid, indexing='ij')
  b = scene['background']
  wave = 0.5 + 0.5 * jnp.sin(2 * jnp.pi * b['frequency'] *
                             (jnp.cos(b['angle']) * x + jnp.sin(b['angle']) * y) + b['phase'])
  wave = wave * b['textured']
  image = b['colour'] + wave[..., None] * (b['colour2'] - b['colour'])
  seg = jnp.zeros((size, size), jnp.int32)
  for i in range(scene['kind'].shape[0]):   # static and small: painter's order
    dx, dy = x - scene['centre'][i, 0], y - scene['centre'][i, 1]
    cos, sin = jnp.cos(scene['angle'][i]), jnp.sin(scene['angle'][i])
    u = (cos * dx + sin * dy) / scene['radius'][i]
    v = (-sin * dx + cos * dy) / scene['radius'][i]
    hit = inside(scene['kind'][i], u, v) & scene['present'][i]
    image = jnp.where(hit[..., None], scene['colour'][i], image)
    seg = jnp.where(hit, i + 1, seg)
  return image, seg


def sample_scene(key, max_objects=6, min_objects=2, shapes=SHAPES, background='mixed',
                 radius=(0.1, 0.22)):
  """Parameters of one random scene: between min_objects and max_objects shapes (uniform),
  kinds drawn from `shapes`, saturated colours, sizes `radius` (fractions of the image side)."""
  ks = jax.random.split(key, 15)
  kinds = jnp.asarray([SHAPES.index(s) for s in shapes])
  n = jax.random.randint(ks[0], (), min_objects, max_objects + 1)
  colour = hsv_to_rgb(jax.random.uniform(ks[1], (max_objects,)),
                      jax.random.uniform(ks[2], (max_objects,), minval=0.6, maxval=1.0),
                      jax.random.uniform(ks[3], (max_objects,), minval=0.65, maxval=1.0))
  # Background colours are dull (low saturation, darker) so objects stand out from them.
  bg = hsv_to_rgb(jax.random.uniform(ks[4], (2,)),
                  jax.random.uniform(ks[5], (2,), minval=0.0, maxval=0.5),
                  jax.random.uniform(ks[6], (2,), minval=0.1, maxval=0.5))
  textured = {'plain': False, 'textured': True}.get(
      background, jax.random.bernoulli(ks[12]))
  return {
      'kind': kinds[jax.random.randint(ks[8], (max_objects,), 0, len(kinds))],
      'centre': jax.random.uniform(ks[9], (max_objects, 2), minval=0.15, maxval=0.85),
      'radius': jax.random.uniform(ks[10], (max_objects,), minval=radius[0], maxval=radius[1]),
      'angle': jax.random.uniform(ks[11], (max_objects,), maxval=2 * jnp.pi),
      'colour': colour,
      'present': jnp.arange(max_objects) < n,
      'background': {
          'colour': bg[0], 'colour2': bg[1], 'textured': jnp.asarray(textured, jnp.float32),
          'frequency': jax.random.uniform(ks[13], (), minval=1.5, maxval=5.0),
          'angle': jax.random.uniform(ks[14], (), maxval=jnp.pi),
          'phase': jax.random.uniform(ks[7], (), maxval=2 * jnp.pi)},
  }


def scenes(key, batch, size=64, **kwargs):
  """A batch of random scenes: {'image': (batch, size, size, 3) float32 in [0, 1],
  'segmentation': (batch, size, size) int32, 'num_objects': (batch,) int32}."""
  params = jax.vmap(lambda k: sample_scene(k, **kwargs))(jax.random.split(key, batch))
  image, seg = jax.vmap(lambda p: render(p, size))(params)
  return {'image': image, 'segmentation': seg,
          'num_objects': params['present'].sum(-1).astype(jnp.int32)}


def object_masks(segmentation, max_objects):
  """The true masks (..., max_objects + 1, H, W) float32: [background, object 1, ...]."""
  return jnp.moveaxis(jax.nn.one_hot(segmentation, max_objects + 1), -1, -3)


def image_entropy(image01, bins=256):
  """Shannon entropy (bits) of the grey-level histogram of each image (..., H, W, 3) in [0, 1]."""
  grey = np.asarray(image01, np.float32).mean(-1)
  grey = np.round(np.clip(grey, 0, 1) * (bins - 1)).astype(np.int64)
  flat = grey.reshape(-1, grey.shape[-2] * grey.shape[-1])
  counts = np.stack([np.bincount(g, minlength=bins) for g in flat]) / flat.shape[-1]
  with np.errstate(divide='ignore', invalid='ignore'):
    h = -np.where(counts > 0, counts * np.log2(counts), 0.0).sum(-1)
  return h.reshape(grey.shape[:-2])


# ===========================================================================
# Real images
# ===========================================================================
# The loaders (TFDS, folder) are common.images', imported above under their old names.

def random_batch(key, pool, batch):
  """A batch of images from a device pool (n, H, W, 3) uint8: random indices and random
  horizontal flips -> float32 in [0, 1]."""
  k_idx, k_flip = jax.random.split(key)
  images = pool[jax.random.randint(k_idx, (batch,), 0, pool.shape[0])].astype(jnp.float32) / 255
  flip = jax.random.bernoulli(k_flip, 0.5, (batch,))
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)
