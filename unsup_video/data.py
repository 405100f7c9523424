"""Moving MNIST for the LSTM video autoencoders (Srivastava et al., 2015).

Generator
---------
Each sequence places `num_digits` 28x28 digits on a zero canvas (64x64 by
default) for `num_frames` frames (20).  A digit's top-left corner starts
uniformly in the free range [0, canvas - 28] in both axes and moves in a
direction drawn from U(0, 2 pi) at `speed` times the free range per frame
(0.1 * 36 = 3.6 px).  Positions are continuous; a digit that would leave the
free range is reflected off the wall (the position is mirrored back inside and
that velocity component flips).  A frame draws every digit at its rounded
integer position and combines them by a pixelwise max.  Positions are
(row, col) of the top-left corner.  Training data is made on the fly: a pure
function of (key, digits), jitted and vmapped over per-sequence keys.

Digits
------
`embedded_digits` renders 0-9 from a handful of stroke control points per
class with a per-sample random hand (size, width, slant, rotation, stroke
width, control-point jitter), anti-aliased and centred by the centre of mass
in 28x28 as MNIST is, so everything runs with no download.  `mnist_digits`
reads a prepared TFDS 'mnist' without TensorFlow.

Standard test set
-----------------
10,000 fixed sequences: `load_test_npy` reads the released
`mnist_test_seq.npy` (time-major (20, 10000, 64, 64) uint8) and
`load_test_tfds` the TFDS 'moving_mnist' test split (needs TensorFlow).
Without either, `fixed_test_set` generates a deterministic one from its own
key stream, fold_in(PRNGKey(seed), TEST_STREAM): derive training keys differently.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from common import mnist

DIGIT = 28                 # digit image size
SOURCES = ('embedded', 'mnist', 'auto')
TEST_STREAM = 0x7E57       # fold_in tag of the generated test set's key stream
_TEST_CHUNK = 100          # sequences per compiled call of fixed_test_set


# ===========================================================================
# Moving digits
# ===========================================================================

def bounce(pos0, vel0, num_frames, free):
  """Positions and velocities (T, ..., 2) of points reflected inside [0, free].

  Frame 0 is pos0.  Between frames a point moves by its velocity; a
  coordinate that leaves [0, free] is mirrored back at the wall and its
  velocity flips, so the speed never changes.
  """
  def step(carry, _):
    p, v = carry
    q = p + v
    low, high = q < 0, q > free
    q = jnp.where(low, -q, jnp.where(high, 2 * free - q, q))
    v = jnp.where(low | high, -v, v)
    return (q, v), (p, carry[1])

  init = (jnp.asarray(pos0, jnp.float32), jnp.asarray(vel0, jnp.float32))
  _, (pos, vel) = jax.lax.scan(step, init, None, length=num_frames)
  return pos, vel


def draw(images, positions, canvas):
  """One frame: images (D, h, w) pasted at integer (row, col) positions (D, 2), max-combined."""
  def paste(image, rc):
    return jax.lax.dynamic_update_slice(jnp.zeros((canvas, canvas), image.dtype), image,
                                        (rc[0], rc[1]))
  return jnp.max(jax.vmap(paste)(images, positions), axis=0)


def pixel_positions(positions):
  """Where the continuous positions are drawn: rounded to the nearest pixel."""
  return jnp.round(positions).astype(jnp.int32)


def _sequence(key, digits, num_frames, canvas, num_digits, speed):
  """One sequence: frames (T, canvas, canvas) and continuous positions (T, D, 2)."""
  k_digit, k_pos, k_dir = jax.random.split(key, 3)
  free = canvas - digits.shape[-1]
  images = digits[jax.random.randint(k_digit, (num_digits,), 0, digits.shape[0])]
  pos0 = free * jax.random.uniform(k_pos, (num_digits, 2))
  theta = 2 * jnp.pi * jax.random.uniform(k_dir, (num_digits,))
  vel0 = speed * free * jnp.stack([jnp.sin(theta), jnp.cos(theta)], axis=-1)
  pos, _ = bounce(pos0, vel0, num_frames, free)
  frames = jax.vmap(lambda p: draw(images, pixel_positions(p), canvas))(pos)
  return frames, pos


@functools.partial(jax.jit,
                   static_argnames=('batch', 'num_frames', 'canvas', 'num_digits'))
def moving_mnist_with_positions(key, digits, batch, num_frames=20, canvas=64, num_digits=2,
                                speed=0.1):
  """Moving MNIST and its trajectories.

  digits: (N, 28, 28) float32 in [0, 1]; each sequence picks num_digits of
  them uniformly (with replacement).  Returns frames (batch, T, canvas,
  canvas) float32 in [0, 1] and continuous top-left positions (batch, T,
  num_digits, 2) as (row, col).
  """
  digits = jnp.asarray(digits, jnp.float32)
  if digits.ndim != 3 or digits.shape[-1] != digits.shape[-2] or digits.shape[-1] > canvas:
    raise ValueError(f'digits has shape {digits.shape}: expected (N, h, h) with h <= '
                     f'canvas={canvas}')
  keys = jax.random.split(key, batch)
  return jax.vmap(_sequence, in_axes=(0, None, None, None, None, None))(
      keys, digits, num_frames, canvas, num_digits, speed)


def moving_mnist(key, digits, batch, num_frames=20, canvas=64, num_digits=2, speed=0.1):
  """Moving MNIST frames (batch, T, canvas, canvas) float32 in [0, 1]; see the module doc."""
  return moving_mnist_with_positions(key, digits, batch, num_frames, canvas, num_digits,
                                     speed)[0]


def fixed_test_set(digits, num, seed=0, **gen_kwargs):
  """A deterministic generated test set (num, T, canvas, canvas) float32, as numpy.

  Keys come from fold_in(PRNGKey(seed), TEST_STREAM), then one fold_in per
  chunk of 100 sequences, so a smaller set is a prefix of a larger one and
  the set does not depend on how training splits its own keys.
  """
  if num < 1:
    raise ValueError(f'num={num} is invalid: must be >= 1')
  base = jax.random.fold_in(jax.random.PRNGKey(seed), TEST_STREAM)
  chunks = [np.asarray(moving_mnist(jax.random.fold_in(base, i), digits, _TEST_CHUNK,
                                    **gen_kwargs))
            for i in range(-(-num // _TEST_CHUNK))]
  return np.concatenate(chunks)[:num]


# ===========================================================================
# Embedded digits
# ===========================================================================

# Strokes of each digit as control points (x, y) in a unit box, y down.  A
# repeated point makes a corner.  The curves through them are uniform
# Catmull-Rom splines, which are linear in the control points, so per-sample
# jitter is added to the control points and the curve is a matrix product.
_STROKES = {
    0: [[(0.5, 0.0), (0.2, 0.12), (0.05, 0.5), (0.2, 0.9), (0.5, 1.0), (0.8, 0.88),
         (0.95, 0.5), (0.8, 0.1), (0.5, 0.0), (0.35, 0.06)]],
    1: [[(0.35, 0.15), (0.58, 0.0), (0.58, 0.0), (0.52, 0.5), (0.48, 1.0)]],
    2: [[(0.12, 0.25), (0.35, 0.03), (0.65, 0.0), (0.85, 0.22), (0.75, 0.5), (0.4, 0.78),
         (0.1, 1.0), (0.1, 1.0), (0.5, 0.97), (0.92, 0.98)]],
    3: [[(0.15, 0.15), (0.45, 0.0), (0.78, 0.1), (0.75, 0.35), (0.42, 0.48), (0.42, 0.48),
         (0.8, 0.6), (0.85, 0.85), (0.5, 1.0), (0.12, 0.88)]],
    4: [[(0.35, 0.0), (0.15, 0.6), (0.15, 0.6), (0.5, 0.62), (0.92, 0.6)],
        [(0.72, 0.1), (0.7, 0.55), (0.68, 1.0)]],
    5: [[(0.85, 0.02), (0.3, 0.0), (0.3, 0.0), (0.22, 0.45), (0.22, 0.45), (0.55, 0.38),
         (0.85, 0.6), (0.78, 0.9), (0.45, 1.0), (0.12, 0.88)]],
    6: [[(0.72, 0.0), (0.4, 0.25), (0.18, 0.65), (0.35, 0.98), (0.7, 0.92), (0.75, 0.62),
         (0.45, 0.5), (0.2, 0.7)]],
    7: [[(0.1, 0.05), (0.5, 0.02), (0.92, 0.0), (0.92, 0.0), (0.65, 0.5), (0.45, 1.0)]],
    8: [[(0.72, 0.12), (0.5, 0.0), (0.22, 0.12), (0.3, 0.35), (0.7, 0.6), (0.8, 0.85),
         (0.5, 1.0), (0.2, 0.85), (0.3, 0.6), (0.7, 0.35), (0.78, 0.12), (0.6, 0.02)]],
    9: [[(0.82, 0.2), (0.5, 0.0), (0.2, 0.15), (0.25, 0.42), (0.55, 0.45), (0.82, 0.2),
         (0.82, 0.2), (0.72, 0.6), (0.62, 1.0)]],
}
_SUBSTEPS = 6              # spline samples per control-point span
_SUPERSAMPLE = 1           # rendering samples per pixel side (averaged)


def _spline_matrix(num_points):
  """Uniform Catmull-Rom samples through num_points controls: (M, num_points) weights."""
  rows = []
  for i in range(num_points - 1):
    idx = [max(i - 1, 0), i, i + 1, min(i + 2, num_points - 1)]
    for s in np.arange(_SUBSTEPS) / _SUBSTEPS:
      w = 0.5 * np.array([-s + 2 * s**2 - s**3, 2 - 5 * s**2 + 3 * s**3,
                          s + 4 * s**2 - 3 * s**3, -s**2 + s**3])
      row = np.zeros(num_points)
      np.add.at(row, idx, w)
      rows.append(row)
  last = np.zeros(num_points)
  last[-1] = 1.0
  return np.array(rows + [last])


def _digit_tables():
  """Padded controls (10, C, 2), spline matrices (10, M, C) and segment masks (10, M - 1)."""
  num_c = max(sum(len(s) for s in v) for v in _STROKES.values())
  per = {d: [_spline_matrix(len(s)) for s in v] for d, v in _STROKES.items()}
  num_m = max(sum(m.shape[0] for m in v) for v in per.values())
  ctrl = np.zeros((10, num_c, 2), np.float32)
  mats = np.zeros((10, num_m, num_c), np.float32)
  seg = np.zeros((10, num_m - 1), bool)
  for d, strokes in _STROKES.items():
    c = m = 0
    for stroke, mat in zip(strokes, per[d]):
      ctrl[d, c:c + len(stroke)] = stroke
      mats[d, m:m + mat.shape[0], c:c + len(stroke)] = mat
      seg[d, m:m + mat.shape[0] - 1] = True
      c, m = c + len(stroke), m + mat.shape[0]
  return ctrl, mats, seg


_CTRL, _MATS, _SEG = _digit_tables()

# Per-sample hand: each value uniform in (lo, hi).  Lengths in pixels.
HAND = dict(
    height=(17.0, 21.0),     # digit box height before fitting into 20x20
    width=(0.55, 0.85),      # box width / height
    slant=(-0.05, 0.4),      # shear: x += slant * (height above the centre)
    rotate=(-0.15, 0.15),    # radians
    pen=(1.2, 1.9),          # stroke half-width
    jitter=(0.0, 0.045),     # control-point noise std, in box heights
)


def _render(points, seg, pen):
  """Anti-aliased strokes: coverage of a disc pen of radius `pen` along the valid segments."""
  n = DIGIT * _SUPERSAMPLE
  c = (jnp.arange(n) + 0.5) / _SUPERSAMPLE
  grid = jnp.stack(jnp.meshgrid(c, c, indexing='xy'), axis=-1).reshape(-1, 1, 2)  # (x, y)
  a, b = points[:-1], points[1:]
  ab = b - a
  t = jnp.clip(jnp.sum((grid - a) * ab, -1) / jnp.maximum(jnp.sum(ab * ab, -1), 1e-6), 0, 1)
  dist = jnp.linalg.norm(grid - (a + t[..., None] * ab), axis=-1)
  dist = jnp.min(jnp.where(seg, dist, jnp.inf), axis=-1)
  ink = jnp.clip(pen + 0.5 - dist, 0.0, 1.0)
  return ink.reshape(DIGIT, _SUPERSAMPLE, DIGIT, _SUPERSAMPLE).mean(axis=(1, 3))


def _digit(key, label):
  """One 28x28 digit of class `label` in a random hand, centred by its centre of mass."""
  k_u, k_n = jax.random.split(key)
  u = jax.random.uniform(k_u, (len(HAND),))
  hand = {k: lo + (hi - lo) * u[i] for i, (k, (lo, hi)) in enumerate(HAND.items())}
  ctrl = jnp.asarray(_CTRL)[label]
  ctrl = ctrl + hand['jitter'] * jax.random.normal(k_n, ctrl.shape)
  p = jnp.asarray(_MATS)[label] @ ctrl - 0.5                        # unit box about 0
  p = p * jnp.stack([hand['width'], 1.0]) * hand['height']
  p = p.at[:, 0].add(-hand['slant'] * p[:, 1])
  cs, sn = jnp.cos(hand['rotate']), jnp.sin(hand['rotate'])
  p = p @ jnp.array([[cs, sn], [-sn, cs]])
  # Fit the ink (not just the centre line) into a 20x20 box, as MNIST does.
  seg = jnp.asarray(_SEG)[label]
  used = jnp.concatenate([seg, seg[-1:]]) | jnp.concatenate([seg[:1], seg])
  lo = jnp.min(jnp.where(used[:, None], p, jnp.inf), axis=0)
  hi = jnp.max(jnp.where(used[:, None], p, -jnp.inf), axis=0)
  fit = jnp.minimum(1.0, (20.0 - 2 * hand['pen']) / jnp.max(hi - lo))
  p = (p - (lo + hi) / 2) * fit + DIGIT / 2
  image = _render(p, seg, hand['pen'])
  # MNIST centres the centre of mass: shift the strokes and draw again.
  c = jnp.arange(DIGIT) + 0.5
  mass = jnp.maximum(image.sum(), 1e-6)
  com = jnp.stack([jnp.sum(image.sum(0) * c), jnp.sum(image.sum(1) * c)]) / mass
  return _render(p + DIGIT / 2 - com, seg, hand['pen'])


_DIGIT_CHUNK = 128         # digits per compiled render call (bounds the memory)


@jax.jit
def _digits(key, index):
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(index)
  return jax.vmap(_digit)(keys, index % 10)


def embedded_digits(n=3000, seed=0):
  """n rendered handwritten-like digits (n, 28, 28) float32 in [0, 1] and labels (n,) int32.

  Labels cycle 0..9 so every class is equally common.  Digit i depends only
  on (seed, i), so a smaller set is a prefix of a larger one.  Rendering 3000
  takes seconds, so sets are cached per process (returned read-only).
  """
  if n < 1:
    raise ValueError(f'n={n} is invalid: must be >= 1')
  return _embedded_digits(n, seed)


@functools.lru_cache(maxsize=8)
def _embedded_digits(n, seed):
  key = jax.random.PRNGKey(seed)
  chunks = [np.asarray(_digits(key, jnp.arange(i, i + _DIGIT_CHUNK)))
            for i in range(0, n, _DIGIT_CHUNK)]
  images, labels = np.concatenate(chunks)[:n], np.arange(n, dtype=np.int32) % 10
  images.flags.writeable = labels.flags.writeable = False
  return images, labels


# ===========================================================================
# Real MNIST and the standard test set
# ===========================================================================

def mnist_digits(split='train', data_dir=None):
  """MNIST images (n, 28, 28) float32 in [0, 1] from a prepared TFDS 'mnist' (common.mnist:
  no TensorFlow, never downloads)."""
  return mnist.images(split, data_dir).astype(np.float32) / 255.0


def load_digits(source, data_dir=None, split='train'):
  """Digits (n, 28, 28) float32 for the generator.

  'embedded' renders them, 'mnist' reads a prepared TFDS MNIST, 'auto' uses
  MNIST when it is prepared and the embedded digits otherwise.
  """
  if source not in SOURCES:
    raise ValueError(f'config.data.digits={source!r} is invalid: allowed values are '
                     f'{", ".join(SOURCES)}')
  if source != 'embedded':
    try:
      return mnist_digits(split, data_dir)
    except FileNotFoundError:
      if source == 'mnist':
        raise
  return embedded_digits(seed=0 if split == 'train' else 1)[0]


def load_test_npy(path, num=None):
  """The released test set `mnist_test_seq.npy` as (n, 20, 64, 64) float32 in [0, 1].

  The file is time-major (20, 10000, 64, 64) uint8; it is memory-mapped, so
  a small `num` reads only what it needs.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'Moving MNIST test file not found: {path} (get mnist_test_seq.npy from '
        f'http://www.cs.toronto.edu/~nitish/unsupervised_video/)')
  data = np.load(path, mmap_mode='r')
  if data.ndim != 4:
    raise ValueError(f'{path} has shape {data.shape}: expected (frames, sequences, h, w)')
  data = data[:, :num] if num else data
  return np.ascontiguousarray(np.swapaxes(data, 0, 1)).astype(np.float32) / 255.0


def load_test_tfds(data_dir=None, num=None):
  """The TFDS 'moving_mnist' test split as (n, 20, 64, 64) float32 in [0, 1].

  TFDS only ships this dataset for TensorFlow pipelines, so TensorFlow (the
  `data` extra) is needed; it never downloads.
  """
  try:
    import tensorflow  # noqa: F401  (TFDS video datasets register only with TensorFlow)
  except ImportError:
    raise ImportError('the TFDS moving_mnist loader needs TensorFlow: install the data extra '
                      'with pip install -e ".[data]" (or use load_test_npy on '
                      'mnist_test_seq.npy)') from None
  import tensorflow_datasets as tfds
  try:
    ds = tfds.load('moving_mnist', split='test', data_dir=data_dir or None, download=False)
  except (FileNotFoundError, AssertionError, tfds.core.DatasetNotFoundError) as e:
    where = data_dir or 'the default TFDS data_dir'
    raise FileNotFoundError(f'moving_mnist is not prepared in {where} ({type(e).__name__}); '
                            f'prepare it once with: tfds build moving_mnist'
                            + (f' --data_dir={data_dir}' if data_dir else '')) from None
  if num:
    ds = ds.take(num)
  seqs = [np.asarray(ex['image_sequence']) for ex in tfds.as_numpy(ds)]
  return np.stack(seqs)[..., 0].astype(np.float32) / 255.0
