"""Images for selfsup: a synthetic labelled set generated in JAX (the default, needing no files)
and Imagewang from TFDS with its unlabelled unsup/ folder.

A synthetic class is a shape (circle, square, triangle, plus, ring) filled with a texture
(stripes or dots): 10 classes. Everything else is nuisance drawn at random per image: the
colours and their polarity (light shape on dark ground or the reverse), the position, size and
rotation of the shape, the period, orientation, phase and mark size of its texture, a faint
background grating and pixel noise. Colour and position carry no class, so raw pixels are not
enough; the shape and the kind of texture are, and both stay visible at 32 x 32.

As in vle, an image is drawn in two pure steps: `sample_params` draws its parameters from a key
and a label, `render` paints them, so tests can paint hand-placed shapes.
"""
import jax
import jax.numpy as jnp
import numpy as np

from common import images

SHAPES = ('circle', 'square', 'triangle', 'plus', 'ring')
TEXTURES = ('striped', 'dotted')
CLASSES = tuple(f'{t} {s}' for s in SHAPES for t in TEXTURES)   # label = 2 * shape + texture
NUM_CLASSES = len(CLASSES)
SOURCES = ('synthetic', 'imagewang')
IMAGEWANG_SPLITS = ('train', 'validation')

RADIUS = (0.25, 0.4)          # the shape's size, a fraction of the image side
MIN_PERIOD_PIXELS = 4.0       # texture periods below this would alias into noise
RING_INNER = 0.45             # the ring's hole, a fraction of its radius
PLUS_ARM = 0.36               # the plus's arm half-width, a fraction of its radius
TRIANGLE_INRADIUS = 0.58      # circumradius 1.16: about the area of the other shapes
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
CHUNK = (64, 1024)            # images generated per jitted call: a power of two in this range


def hsv_to_rgb(h, s, v):
  """h, s, v in [0, 1] (any matching shapes) -> (..., 3) RGB in [0, 1]."""
  k = jnp.stack([5.0, 3.0, 1.0])
  t = jnp.mod(k + 6.0 * jnp.asarray(h)[..., None], 6.0)
  v, s = jnp.asarray(v), jnp.asarray(s)
  return v[..., None] - (v * s)[..., None] * jnp.clip(jnp.minimum(t, 4.0 - t), 0.0, 1.0)


def luma(rgb):
  """Rec. 601 luma of (..., 3) RGB: the brightness people see, unlike HSV's value."""
  return rgb @ jnp.array(LUMA_WEIGHTS)


def with_luma(rgb, target):
  """`rgb` (3,) moved towards black or white until its luma is `target` (hue kept)."""
  y = luma(rgb)
  darker = rgb * target / jnp.maximum(y, 1e-6)
  lighter = rgb + (1.0 - rgb) * (target - y) / jnp.maximum(1.0 - y, 1e-6)
  return jnp.where(y > target, darker, lighter)


def shape_distance(kind, u, v):
  """Signed distance (positive inside, in units of the radius) from local coordinates (u, v)
  to the edge of shape `kind` (an index into SHAPES; traced is fine)."""
  r = jnp.sqrt(u * u + v * v)
  angles = -jnp.pi / 2 + 2 * jnp.pi * jnp.arange(3) / 3     # the triangle's outward normals
  reach = u[..., None] * jnp.cos(angles) + v[..., None] * jnp.sin(angles)
  arm = lambda a, b: jnp.minimum(1.0 - jnp.abs(a), PLUS_ARM - jnp.abs(b))
  return jnp.stack([
      1.0 - r,                                                   # circle
      0.8 - jnp.maximum(jnp.abs(u), jnp.abs(v)),                 # square
      TRIANGLE_INRADIUS - reach.max(-1),                         # triangle
      jnp.maximum(arm(u, v), arm(v, u)),                         # plus
      jnp.minimum(1.0 - r, r - RING_INNER),                      # ring
  ])[kind]


def texture_distance(kind, x, y, p, size):
  """Signed distance (positive on a mark, in image units) to the edge of the texture's marks:
  stripes (`kind` 0) or dots on a square lattice (1), both along p['texture_angle']."""
  period = jnp.maximum(p['period'], MIN_PERIOD_PIXELS / size)
  cos, sin = jnp.cos(p['texture_angle']), jnp.sin(p['texture_angle'])
  a = (cos * x + sin * y) / period + p['texture_phase'][0]
  b = (-sin * x + cos * y) / period + p['texture_phase'][1]
  # Stripes: the marks are [0, duty) of each period along a.
  w = a - jnp.floor(a)
  duty = p['mark']
  stripe = jnp.where(w < duty, jnp.minimum(w, duty - w), -jnp.minimum(w - duty, 1.0 - w))
  # Dots: discs of diameter mark + 0.12 periods around the lattice points (a little more than
  # the stripes' width, since a dot is seen over less of the period).
  fa, fb = a - jnp.round(a), b - jnp.round(b)
  dot = 0.5 * (duty + 0.12) - jnp.sqrt(fa * fa + fb * fb)
  return jnp.where(kind == 0, stripe, dot) * period


def coverage(distance, size):
  """Edge anti-aliasing: a signed distance (image units) -> how much of a pixel it covers, a
  linear ramp one pixel wide."""
  return jnp.clip(distance * size + 0.5, 0.0, 1.0)


def render(p, size):
  """Paints one image. Returns (image (size, size, 3) float32 in [0, 1], mask (size, size)
  float32: the shape's coverage of each pixel, 1 inside, 0 outside, fractional on the edge)."""
  grid = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size
  y, x = jnp.meshgrid(grid, grid, indexing='ij')
  wave = jnp.sin(2 * jnp.pi * p['background_frequency'] *
                 (jnp.cos(p['background_angle']) * x + jnp.sin(p['background_angle']) * y)
                 + p['background_phase'])
  image = p['background'] + (p['background_amplitude'] * wave)[..., None]
  dx, dy = x - p['centre'][0], y - p['centre'][1]
  cos, sin = jnp.cos(p['angle']), jnp.sin(p['angle'])
  u = (cos * dx + sin * dy) / p['radius']
  v = (-sin * dx + cos * dy) / p['radius']
  mask = coverage(shape_distance(p['shape'], u, v) * p['radius'], size)
  marks = coverage(texture_distance(p['texture'], x, y, p, size), size)
  fill = p['colour'] + marks[..., None] * (p['colour2'] - p['colour'])
  image = image + mask[..., None] * (fill - image)
  noise = jax.random.normal(p['noise_key'], image.shape) * p['noise']
  return jnp.clip(image + noise, 0.0, 1.0), mask


def sample_params(key, label):
  """Parameters of one random image of class `label` (int32 scalar; traced is fine)."""
  ks = jax.random.split(key, 24)
  u = lambda i, lo=0.0, hi=1.0, shape=(): jax.random.uniform(ks[i], shape, minval=lo, maxval=hi)
  label = jnp.asarray(label, jnp.int32)
  radius = u(0, *RADIUS)
  margin = 0.9 * radius      # the triangle and plus reach a little past the radius: mostly inside
  # Polarity: a light shape on a dark ground, or a dark shape on a light one. The ground, the
  # fill and its marks have lumas at least 0.2 apart, whatever their hues.
  light = jax.random.bernoulli(ks[1])
  hue = u(2)
  pick = lambda i, if_light, if_dark: jnp.where(light, u(i, *if_light), u(i, *if_dark))
  colour = with_luma(hsv_to_rgb(hue, u(3, 0.5, 1.0), 1.0), pick(4, (0.75, 0.95), (0.03, 0.2)))
  colour2 = with_luma(hsv_to_rgb(hue + u(5, -0.15, 0.15), u(6, 0.3, 1.0), 1.0), u(7, 0.4, 0.55))
  background = with_luma(hsv_to_rgb(u(8), u(9, 0.0, 0.7), 1.0),
                         pick(10, (0.03, 0.2), (0.75, 0.95)))
  return {
      'shape': label // 2,
      'texture': label % 2,
      'centre': u(11, margin, 1.0 - margin, (2,)),
      'radius': radius,
      'angle': u(12, 0.0, 2 * jnp.pi),
      'colour': colour,
      'colour2': colour2,
      'background': background,
      'period': radius * u(13, 0.45, 0.7),
      'mark': u(14, 0.4, 0.6),     # stripe width / dot diameter, a fraction of the period
      'texture_angle': u(15, 0.0, jnp.pi),
      'texture_phase': u(16, 0.0, 1.0, (2,)),
      'background_amplitude': u(17, 0.0, 0.06),
      'background_frequency': u(18, 1.0, 4.0),
      'background_angle': u(19, 0.0, jnp.pi),
      'background_phase': u(20, 0.0, 2 * jnp.pi),
      'noise': u(21, 0.01, 0.04),
      'noise_key': ks[22],
  }


def synthetic_image(key, label, size):
  """One image (size, size, 3) float32 in [0, 1] of class `label` (int32 scalar, traced OK)."""
  return render(sample_params(key, label), size)[0]


def to_uint8(images01):
  """float images in [0, 1] -> uint8, rounded."""
  return jnp.round(jnp.clip(images01, 0.0, 1.0) * 255).astype(jnp.uint8)


_batch = jax.jit(jax.vmap(lambda k, l, size: to_uint8(synthetic_image(k, l, size)),
                          in_axes=(0, 0, None)), static_argnums=2)


def synthetic(key, n, size):
  """{'image': uint8 (n, size, size, 3), 'label': int32 (n,)} (numpy): balanced classes, label
  i % 10 then permuted by `key`. Generated in jitted chunks of a power of two images (within
  CHUNK), so few shapes compile whatever n, and memory stays bounded for large pools."""
  if size < 16:
    raise ValueError(f'synthetic images need size >= 16 to show their texture, not {size}')
  k_labels, k_images = jax.random.split(key)
  labels = jax.random.permutation(k_labels, jnp.arange(n, dtype=jnp.int32) % NUM_CLASSES)
  keys = jax.random.split(k_images, n)
  chunk = min(CHUNK[1], 1 << max(n - 1, CHUNK[0] - 1).bit_length())
  out = [np.zeros((0, size, size, 3), np.uint8)]
  for start in range(0, n, chunk):
    idx = jnp.arange(start, start + chunk) % n    # the last chunk wraps round, then is cut
    out.append(np.asarray(_batch(keys[idx], labels[idx], size))[:n - start])
  return {'image': np.concatenate(out), 'label': np.asarray(labels)}


def embedded(seed, size, num_labelled, num_val, num_unlabelled):
  """The default data: {'train': (images uint8, labels), 'val': (images, labels), 'unlabelled':
  images uint8}, three draws from fixed fold_in streams of PRNGKey(seed) (so each is the same
  whatever the sizes of the others); the unlabelled pool's labels are dropped."""
  key = jax.random.PRNGKey(seed)
  draw = lambda stream, n: synthetic(jax.random.fold_in(key, stream), n, size)
  train, val = draw(0, num_labelled), draw(1, num_val)
  return {'train': (train['image'], train['label']), 'val': (val['image'], val['label']),
          'unlabelled': draw(2, num_unlabelled)['image']}


def load_imagewang(name, split, size, num=None, data_dir=None):
  """(images uint8, labels int32, num_classes) of a prepared TFDS Imagewang ('imagewang/160px'
  or 'imagewang/320px'), split 'train' or 'validation' (TFDS slices such as 'train[:90%]' too)."""
  if split.split('[')[0] not in IMAGEWANG_SPLITS:
    raise ValueError(f'unknown Imagewang split {split!r}; allowed values are '
                     f'{", ".join(IMAGEWANG_SPLITS)}')
  return images.load_tfds(name, split, size, num, data_dir, label_key='label')


def load_unlabelled(folder, size, num=None):
  """uint8 images of every image file under `folder` (Imagewang's extracted unsup/ folder)."""
  return images.load_folder(folder, None, size, num)


def to_float(images_uint8):
  """uint8 images -> float32 in [0, 1]."""
  return jnp.asarray(images_uint8, jnp.float32) / 255.0
