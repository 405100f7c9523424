"""SPS datasets: generated bouncing-ball and two-body videos, or the released folder layout.

A generated dataset is a deterministic function of (scene, seed, split): positions come
from sps.physics by rejection sampling on the host, in rounds of jitted, vmapped
candidate batches with keys fold_in(fold_in(key(seed), split), round), and frames from
sps.render (CPU and GPU float rounding can differ slightly).  `load_folder` reads the
released PNG sequences into the same dict.
"""

import functools
import os
import re
import warnings

import jax
import numpy as np

from sps import physics
from sps import render
from sps.render import SCENES  # noqa: F401  (re-exported: the scenes make_dataset builds)

SPLITS = ('train', 'eval')
DEFAULT_NUM_FRAMES = {'bouncing_ball': 20, 'two_body': 25}
POSITION_DIM = {'bouncing_ball': 3, 'two_body': 6}

_BATCH = 1024              # candidates per rejection round (fixed: keeps prefixes stable)
_RENDER_CHUNK = 8          # sequences per jitted render call (small chunks stay in cache)
_MAX_ROUNDS = 1000


# ===========================================================================
# Datasets
# ===========================================================================

@functools.lru_cache(maxsize=None)
def _batched_candidates(scene, num_frames):
  if scene == 'bouncing_ball':
    fn = functools.partial(physics.ball_candidate, num_frames=num_frames)
  else:
    fn = functools.partial(physics.two_body_trajectory, num_frames=num_frames)
  return jax.jit(jax.vmap(fn))


@functools.lru_cache(maxsize=None)
def _batched_renderer(scene, image_size):
  fn = render.render_bouncing_ball if scene == 'bouncing_ball' else render.render_two_body
  return jax.jit(jax.vmap(functools.partial(fn, image_size=image_size)))


def sample_positions(scene, num_sequences, key, num_frames):
  """Rejection sampling: rounds of _BATCH candidates from fold_in(key, round)
  until enough valid ones; deterministic and independent of num_sequences
  (a smaller set is a prefix of a larger one)."""
  candidates = _batched_candidates(scene, num_frames)
  kept, count = [], 0
  for round_ in range(_MAX_ROUNDS):
    if count >= num_sequences:
      break
    keys = jax.random.split(jax.random.fold_in(key, round_), _BATCH)
    pos, valid = jax.device_get(candidates(keys))
    kept.append(pos[valid])
    count += int(valid.sum())
  else:
    raise RuntimeError(f'{scene}: only {count} valid sequences after {_MAX_ROUNDS} rounds')
  return np.concatenate(kept)[:num_sequences].astype(np.float32)


def render_sequences(scene, positions, image_size=32):
  """(N, T, P) positions -> (N, T, H, W, 3) frames, in fixed-size chunks."""
  draw = _batched_renderer(scene, image_size)
  n = len(positions)
  pad = -n % _RENDER_CHUNK
  padded = np.concatenate([positions, np.repeat(positions[-1:], pad, 0)]) if pad else positions
  chunks = [np.asarray(draw(padded[i:i + _RENDER_CHUNK]))
            for i in range(0, len(padded), _RENDER_CHUNK)]
  return np.concatenate(chunks)[:n]


def make_dataset(scene, num_sequences, seed, split='train', image_size=32, num_frames=None):
  """Build a synthetic dataset.

  Returns {'frames': float32 (N, T, H, W, 3) in [0, 1],
           'positions': float32 (N, T, P)} as numpy arrays (P = 3 or 6).
  'train' and 'eval' use different keys (the split is folded into the seed).
  """
  render.check_scene(scene)
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; expected one of {SPLITS}')
  if num_sequences < 1:
    raise ValueError(f'num_sequences must be positive, got {num_sequences}')
  num_frames = num_frames or DEFAULT_NUM_FRAMES[scene]
  key = jax.random.fold_in(jax.random.key(seed), SPLITS.index(split))
  positions = sample_positions(scene, num_sequences, key, num_frames)
  frames = render_sequences(scene, positions, image_size)
  return {'frames': frames.astype(np.float32), 'positions': positions}


# ===========================================================================
# Released folder layout
# ===========================================================================

_NUMBER = re.compile(r'[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?')


def _parse_frame_name(name):
  """'{t}_{x}_{y}_{z}.png' or the released '{t}.[x, y, z].png' -> (t, (x, y, z))."""
  numbers = _NUMBER.findall(os.path.splitext(name)[0])
  if len(numbers) < 4:
    raise ValueError(f'cannot parse time and position from file name {name!r}')
  return int(float(numbers[0])), tuple(float(v) for v in numbers[1:4])


def _numeric_key(name):
  try:
    return (0, float(name), name)
  except ValueError:
    return (1, 0.0, name)


def _load_image(path, image_size):
  from PIL import Image  # ships with matplotlib
  with Image.open(path) as img:
    img = img.convert('RGB')
    if img.size != (image_size, image_size):
      img = img.resize((image_size, image_size), Image.BOX)  # area averaging
    return np.asarray(img, np.float32) / 255.0


def load_folder(path, num_frames=None, image_size=32):
  """Load the released bouncing-ball layout: one sub-folder per sequence
  (sorted numerically) of PNG frames named with time index and position.

  Sequences are cut to num_frames (default: the first sequence's length);
  shorter ones are skipped with a warning.  Returns the make_dataset dict.
  """
  if not os.path.isdir(path):
    raise ValueError(f'dataset folder not found: {path}')
  seq_dirs = sorted((d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))),
                    key=_numeric_key)
  frames, positions, skipped = [], [], 0
  for seq in seq_dirs:
    seq_path = os.path.join(path, seq)
    files = [f for f in os.listdir(seq_path) if f.lower().endswith('.png')]
    if not files:
      continue
    parsed = sorted((_parse_frame_name(f) + (f,) for f in files), key=lambda p: p[0])
    num_frames = num_frames or len(parsed)
    if len(parsed) < num_frames:
      skipped += 1
      continue
    parsed = parsed[:num_frames]
    frames.append(np.stack([_load_image(os.path.join(seq_path, f), image_size)
                            for _, _, f in parsed]))
    positions.append(np.asarray([p for _, p, _ in parsed], np.float32))
  if skipped:
    warnings.warn(f'skipped {skipped} sequences shorter than {num_frames} frames')
  if not frames:
    raise ValueError(f'no PNG sequences found in dataset folder: {path}')
  return {'frames': np.stack(frames).astype(np.float32), 'positions': np.stack(positions)}
