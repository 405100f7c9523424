"""Sequences a researcher brings: a .npz or .npy file of (N, T, D) arrays (data.source='npz').

File layout
-----------
- `.npy`: one array (N, T, D), or (N, T) for one feature; every step is real.
- `.npz`: the sequences under 'x' (or the file's only array), with optionally either
  'lengths' (N,) ints (the first lengths[i] steps of sequence i are real) or 'mask' (N, T)
  of 0/1 whose real steps form a prefix. Steps past a sequence's length may hold anything.

Sequences longer than data.max_len are cut to it. The last `num_eval` sequences of
the file are held out; training uses the first `num_train` of the others.
"""
import functools
import os

import numpy as np


def _fail(path, why):
  raise ValueError(f'config.data.path={path!r}: {why}')


@functools.lru_cache(maxsize=2)
def read(path):
  """{'x': (N, T, D) float32 with padding zeroed, 'mask': (N, T) float32}, checked."""
  if not path:
    raise FileNotFoundError('config.data.path is empty: set it to a .npz or .npy file of '
                            '(N, T, D) sequences (data.source=npz)')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'config.data.path={path!r}: no such file')
  lengths = mask = None
  if path.endswith('.npy'):
    x = np.load(path, allow_pickle=False)
  else:
    with np.load(path, allow_pickle=False) as f:
      keys = list(f.keys())
      if 'x' in f:
        x = f['x']
      elif len(keys) == 1:
        x = f[keys[0]]
      else:
        _fail(path, f"holds {keys}: name the sequences 'x'")
      lengths = f['lengths'] if 'lengths' in f else None
      mask = f['mask'] if 'mask' in f else None
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3 or 0 in x.shape:
    _fail(path, f'the sequences have shape {x.shape}: need (N, T, D) or (N, T)')
  if not np.issubdtype(x.dtype, np.number):
    _fail(path, f'the sequences are of dtype {x.dtype}: need numbers')
  n, t, _ = x.shape
  if lengths is not None and mask is not None:
    _fail(path, "holds both 'lengths' and 'mask': keep one")
  if lengths is not None:
    lengths = np.asarray(lengths)
    if lengths.shape != (n,) or np.any(lengths < 1) or np.any(lengths > t):
      _fail(path, f"'lengths' must be ({n},) ints in 1..{t}")
    mask = (np.arange(t) < lengths[:, None])
  elif mask is not None:
    mask = np.asarray(mask)
    if mask.shape != (n, t) or not np.isin(mask, (0, 1)).all():
      _fail(path, f"'mask' must be ({n}, {t}) of 0/1")
    mask = mask > 0
    if np.any(mask[:, 1:] > mask[:, :-1]) or not mask[:, 0].all():
      _fail(path, "'mask' must mark a prefix of each sequence as real (1 1 .. 1 0 .. 0)")
  else:
    mask = np.ones((n, t), bool)
  x = np.where(mask[..., None], x, 0).astype(np.float32)
  if not np.isfinite(x).all():
    _fail(path, 'the real steps hold NaN or inf')
  return {'x': x, 'mask': mask.astype(np.float32)}


def num_features(path):
  return read(path)['x'].shape[-1]


def split(path, which, num_train, num_eval, max_len):
  """One split, cut at max_len steps: {'x', 'mask'} (copies)."""
  data = read(path)
  n = len(data['x'])
  if not 0 < num_eval < n:
    raise ValueError(f'config.data.num_eval={num_eval} is invalid: the file holds {n} '
                     f'sequences, so it must be between 1 and {n - 1}')
  part = slice(None, n - num_eval) if which == 'train' else slice(n - num_eval, None)
  x, mask = data['x'][part], data['mask'][part]
  if which == 'train':
    x, mask = x[:num_train], mask[:num_train]
  return {'x': x[:, :max_len].copy(), 'mask': mask[:, :max_len].copy()}
