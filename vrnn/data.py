"""Sequence data for the VRNN: generated handwriting, IAM-OnDB lines, MNIST rows, npz files.

Stroke features
---------------
Each point is (dx, dy, pen_up), float32.  dx, dy is the offset from the
previous point with the y axis pointing up; the first point of a line is the
line's origin, so its offset is (0, 0).  pen_up is 1 on the last point of each
stroke (the pen is lifted after it) and on the last real point of a sequence,
also when the sequence was cut at max_len, so every sequence ends with the pen
up.  Sequences are padded with zeros to max_len and come with a float32 mask
(1 = real point, 0 = padding; real points always form a prefix).  The raw
offsets are in arbitrary units (generated: a few units per point; IAM: tablet
pixels); `load` normalises dx, dy by the train split's mean and std over the
real points and never touches the pen bit.

The handwriting generator is vrnn.strokes; MNIST is read through common.mnist.
"""

import functools
import glob
import os
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np

from common import mnist
from vrnn import arrays
from vrnn.strokes import DEFAULT_MAX_LEN, handwriting

SOURCES = ('synthetic', 'iam', 'mnist_rows', 'npz')
SPLITS = ('train', 'eval')


# ===========================================================================
# IAM-OnDB
# ===========================================================================

def read_split_file(path):
  """Ids listed one per line (IAM-OnDB split files list form ids such as
  'a01-000u'); blank lines and '#' comments are skipped."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'split file not found: {path}')
  with open(path) as f:
    lines = (line.split('#', 1)[0].strip() for line in f)
    return [line for line in lines if line]


def _xml_files(root):
  """{line id: path} of every *.xml under root/lineStrokes (or under root)."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f'IAM-OnDB folder not found: {root}')
  base = os.path.join(root, 'lineStrokes')
  base = base if os.path.isdir(base) else root
  paths = glob.glob(os.path.join(base, '**', '*.xml'), recursive=True)
  if not paths:
    raise FileNotFoundError(f'no IAM-OnDB lineStrokes *.xml files found under {base}')
  return {os.path.splitext(os.path.basename(p))[0]: p for p in sorted(paths)}


def _read_strokes(path):
  """Points (N, 2) in file coordinates (y down) and stroke-end flags (N,)."""
  try:
    tree = ET.parse(path)
  except ET.ParseError as e:
    raise ValueError(f'cannot parse IAM-OnDB stroke file {path}: {e}') from None
  points, ends = [], []
  for stroke in tree.getroot().iter('Stroke'):
    xy = [(float(p.get('x')), float(p.get('y'))) for p in stroke.iter('Point')]
    if xy:
      points.extend(xy)
      ends.extend([0.0] * (len(xy) - 1) + [1.0])
  return np.asarray(points, np.float64).reshape(-1, 2), np.asarray(ends, np.float32)


def strokes_to_offsets(points, ends, max_len):
  """Absolute points (N, 2) with y down + stroke-end flags -> (max_len, 3) offsets, mask.

  y is flipped to point up; the first offset is (0, 0); cut lines end with the pen up.
  """
  n = min(len(points), max_len)
  x = np.zeros((max_len, 3), np.float32)
  mask = np.zeros(max_len, np.float32)
  if n == 0:
    return x, mask
  xy = points[:n] * np.array([1.0, -1.0])
  x[1:n, :2] = np.diff(xy, axis=0)
  x[:n, 2] = ends[:n]
  x[n - 1, 2] = 1.0
  mask[:n] = 1.0
  return x, mask


def load_iam(root, ids=None, max_len=DEFAULT_MAX_LEN):
  """Read IAM-OnDB lineStrokes XML files into stroke sequences.

  Strokes are concatenated in file order; see the module docstring for the
  features.  Lines are sorted by line id (the file name, e.g. a01-000u-01).

  Args:
    root: folder holding lineStrokes/ (or the xml tree itself); searched
      recursively for *.xml.
    ids: optional ids; a line is kept when its id starts with one of them
      (a form id such as 'a01-000u' selects all lines of that form).
    max_len: points per sequence; longer lines are cut.

  Returns:
    {'x': (n, max_len, 3) float32 raw offsets, 'mask': (n, max_len) float32,
     'ids': list of line ids, 'length': (n,) int32 points before cutting}.
  """
  files = _xml_files(root)
  names = sorted(files)
  if ids is not None:
    prefixes = tuple(ids)
    names = [name for name in names if name.startswith(prefixes)] if prefixes else []
    if not names:
      raise FileNotFoundError(f'none of the {len(prefixes)} requested ids match a lineStrokes '
                              f'file under {root}')
  xs, masks, kept, lengths = [], [], [], []
  for name in names:
    points, ends = _read_strokes(files[name])
    if len(points) == 0:
      continue
    x, mask = strokes_to_offsets(points, ends, max_len)
    xs.append(x)
    masks.append(mask)
    kept.append(name)
    lengths.append(len(points))
  if not xs:
    raise FileNotFoundError(f'no strokes in the IAM-OnDB files under {root}')
  return {'x': np.stack(xs), 'mask': np.stack(masks), 'ids': kept,
          'length': np.asarray(lengths, np.int32)}


# ===========================================================================
# MNIST rows
# ===========================================================================

def mnist_rows(split, data_dir=None):
  """MNIST as sequences of 28 rows of 28 bits (pixels binarised at 0.5), from a prepared TFDS
  'mnist' (common.mnist: no TensorFlow, never downloads).

  Returns {'x': (n, 28, 28) float32 in {0, 1}, 'mask': (n, 28) ones}.
  """
  x = (mnist.images(split, data_dir).astype(np.float32) / 255.0 > 0.5).astype(np.float32)
  return {'x': x, 'mask': np.ones(x.shape[:2], np.float32)}


# ===========================================================================
# Normalisation
# ===========================================================================

def _xp(*arrays):
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def offset_stats(x, mask, features=2):
  """Mean and std (features,) of the first `features` features over the real points (mask == 1):
  dx, dy for stroke data, every continuous feature for npz data."""
  x, mask = np.asarray(x, np.float64), np.asarray(mask) > 0
  real = x[..., :features][mask]
  if real.size == 0:
    raise ValueError('offset_stats: no real points (mask is all zero)')
  std = np.maximum(real.std(axis=0), 1e-6)
  return real.mean(axis=0).astype(np.float32), std.astype(np.float32)


def normalise(x, mask, mean, std):
  """The first len(mean) features -> (x - mean) / std on real points; the rest (the pen bit)
  and padding (0) are kept."""
  xp, n = _xp(x, mask, mean, std), mean.shape[-1]
  real = (x[..., :n] - mean) / std
  return xp.concatenate([real, x[..., n:]], -1) * mask[..., None]


def denormalise(x, mask, mean, std):
  """Inverse of `normalise`."""
  xp, n = _xp(x, mask, mean, std), mean.shape[-1]
  real = x[..., :n] * std + mean
  return xp.concatenate([real, x[..., n:]], -1) * mask[..., None]


def log_jacobian(mask, std):
  """Per sequence (N,): log |d x_normalised / d x| summed over its real steps, -T_i sum log std.

  A density of normalised data plus this is the density of the data in its own units.
  """
  return -np.asarray(mask, np.float64).sum(-1) * np.sum(np.log(np.asarray(std, np.float64)))


# ===========================================================================
# Datasets for training
# ===========================================================================

@functools.lru_cache(maxsize=4)
def _synthetic(seed, split, n, max_len):
  key = jax.random.fold_in(jax.random.PRNGKey(seed), SPLITS.index(split))
  data = handwriting(key, n, max_len)
  return data['x'], data['mask']


@functools.lru_cache(maxsize=2)
def _iam(root, ids, max_len):
  """load_iam, read once for both splits (the eval split needs the train statistics)."""
  return load_iam(root, ids, max_len)


def _take(data, n):
  """Copies of the first n sequences (n <= 0: all)."""
  return {k: np.array(v[:n] if n > 0 else v) for k, v in data.items()}


def _raw(config, split, seed):
  """Unnormalised {'x', 'mask'} of one split."""
  n = config.num_train if split == 'train' else config.num_eval
  if config.source == 'synthetic':
    if n < 1:
      raise ValueError(f'config.data.num_{split}={n} is invalid: must be >= 1')
    x, mask = _synthetic(int(seed), split, int(n), int(config.max_len))
    return {'x': x.copy(), 'mask': mask.copy()}
  if config.source == 'iam':
    if not config.path:
      raise FileNotFoundError('config.data.path is empty: set it to the IAM-OnDB folder '
                              '(the one holding lineStrokes/)')
    split_list = config.train_list if split == 'train' else config.eval_list
    if split_list:
      data = _iam(config.path, tuple(read_split_file(split_list)), int(config.max_len))
      return _take({'x': data['x'], 'mask': data['mask']}, n)
    data = _iam(config.path, None, int(config.max_len))
    num_eval = int(config.num_eval)
    if not 0 < num_eval < len(data['ids']):
      raise ValueError(f'config.data.num_eval={num_eval} is invalid: without eval_list it must '
                       f'be between 1 and the {len(data["ids"]) - 1} lines minus one')
    part = slice(None, -num_eval) if split == 'train' else slice(-num_eval, None)
    return _take({'x': data['x'][part], 'mask': data['mask'][part]}, n)
  if config.source == 'npz':
    return arrays.split(config.path, split, int(n), int(config.num_eval), int(config.max_len))
  data = mnist_rows('train' if split == 'train' else 'test', config.path or None)
  return {k: v[:n] if n > 0 else v for k, v in data.items()}


def load(data_config, split, seed, stats=None):
  """One split of the configured data, ready for training.

  Stroke data (synthetic, iam) come normalised by the train split's offset statistics
  (dx, dy); npz data with data.normalise by the train split's statistics of every feature.
  The statistics are returned with them (the same for both splits); `stats` = (mean, std)
  uses those instead (a workdir's stored ones). mnist_rows, and npz data without
  data.normalise, are returned as they are with mean 0 and std 1.

  Returns {'x': (n, T, D) float32, 'mask': (n, T) float32, 'mean': (F,), 'std': (F,)} with
  F the number of normalised features (2 for strokes, D for npz).
  """
  source = data_config.source
  if source not in SOURCES:
    raise ValueError(f'config.data.source={source!r} is invalid: allowed values are '
                     f'{", ".join(SOURCES)}')
  if split not in SPLITS:
    raise ValueError(f'split={split!r} is invalid: allowed values are {", ".join(SPLITS)}')
  if source != 'mnist_rows' and data_config.max_len < 2:
    raise ValueError(f'config.data.max_len={data_config.max_len} is invalid: must be >= 2')
  data = _raw(data_config, split, seed)
  mask = data['mask'].astype(np.float32)
  features = data['x'].shape[-1] if source == 'npz' else 2
  if source == 'mnist_rows' or (source == 'npz' and not data_config.normalise):
    return {'x': data['x'].astype(np.float32), 'mask': mask,
            'mean': np.zeros(features, np.float32), 'std': np.ones(features, np.float32)}
  if stats is None:
    train = data if split == 'train' else _raw(data_config, 'train', seed)
    stats = offset_stats(train['x'], train['mask'], features)
  mean, std = (np.asarray(a, np.float32) for a in stats)
  if mean.shape != (features,) or std.shape != (features,):
    raise ValueError(f'the stored normalisation has {mean.shape[0]} features, the data '
                     f'{features}: the data file changed since training')
  x = normalise(data['x'], data['mask'], mean, std).astype(np.float32)
  return {'x': x, 'mask': mask, 'mean': mean, 'std': std}
