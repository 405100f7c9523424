"""Generated handwriting for the VRNN: cursive lines as stroke sequences, in pure JAX.

The features are those of vrnn.data (dx, dy, pen_up per point, zero padding and a mask).

Generated handwriting
---------------------
`handwriting` writes lines of cursive "words" (by default 2-3 words of 3-5
letters drawn with English letter frequencies) from a 14-letter embedded
alphabet.  Each glyph is a short list of control points in a
letter box (baseline y = 0, x-height 1, ascenders up to 2) that enters on the
left and leaves on the right, so the letters of a word join into one pen-down
stroke.  A line is laid out letter by letter, shaped per writer (slant,
size, width, ascender height, spacing, baseline tilt and per-word baseline
shifts, control-point jitter), smoothed with a centripetal Catmull-Rom spline
and resampled along the curve.  The pen moves slower in tight turns (the
two-thirds power law: speed ~ curvature^(-1/3)), so points cluster in loops
and cusps as in tablet data.  After each word the pen goes back to dot its
i's and cross its t's (separate short strokes).  Everything is a pure JAX
function of (key, line index): `jit` + `vmap`, static shapes throughout,
variable-length content packed with sorts and `jnp.nonzero(..., size=...)`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_MAX_LEN = 256

# ===========================================================================
# Glyphs
# ===========================================================================

# Control points (x, y) in x-heights: baseline y = 0, x-height 1, ascenders ~2.
# Each glyph enters at (0, 0) and leaves at its last point on the right.
_GLYPHS = {
    'a': [(0, 0), (0.35, 0.55), (0.68, 0.9), (0.4, 1.0), (0.12, 0.75), (0.06, 0.32),
          (0.26, 0.03), (0.52, 0.22), (0.68, 0.95), (0.66, 0.35), (0.74, 0.04), (0.95, 0.08)],
    'c': [(0, 0), (0.35, 0.5), (0.62, 0.85), (0.48, 1.0), (0.22, 0.85), (0.06, 0.45),
          (0.16, 0.07), (0.45, 0.0), (0.72, 0.12)],
    'd': [(0, 0), (0.35, 0.55), (0.68, 0.9), (0.4, 1.0), (0.12, 0.75), (0.06, 0.32),
          (0.26, 0.03), (0.52, 0.22), (0.7, 1.0), (0.78, 1.9), (0.74, 1.0), (0.72, 0.3),
          (0.8, 0.03), (1.0, 0.1)],
    'e': [(0, 0), (0.3, 0.28), (0.55, 0.6), (0.52, 0.86), (0.32, 0.92), (0.16, 0.66),
          (0.16, 0.24), (0.36, 0.02), (0.6, 0.04), (0.78, 0.16)],
    'h': [(0, 0), (0.32, 0.8), (0.55, 1.6), (0.52, 2.0), (0.36, 1.85), (0.26, 1.0),
          (0.22, 0.0), (0.32, 0.62), (0.55, 0.95), (0.76, 0.72), (0.76, 0.22), (0.86, 0.0),
          (1.02, 0.1)],
    'i': [(0, 0), (0.25, 0.5), (0.42, 0.95), (0.36, 0.4), (0.42, 0.04), (0.62, 0.02),
          (0.72, 0.12)],
    'l': [(0, 0), (0.4, 0.7), (0.66, 1.5), (0.62, 2.0), (0.46, 2.0), (0.34, 1.5),
          (0.3, 0.6), (0.36, 0.08), (0.56, 0.0), (0.72, 0.12)],
    'm': [(0, 0), (0.12, 0.6), (0.18, 0.95), (0.18, 0.4), (0.18, 0.0), (0.26, 0.62),
          (0.45, 0.95), (0.6, 0.72), (0.6, 0.0), (0.68, 0.62), (0.88, 0.95), (1.04, 0.72),
          (1.04, 0.22), (1.14, 0.0), (1.3, 0.1)],
    'n': [(0, 0), (0.15, 0.6), (0.2, 0.95), (0.2, 0.42), (0.2, 0.0), (0.3, 0.62),
          (0.54, 0.95), (0.74, 0.72), (0.74, 0.22), (0.84, 0.0), (1.0, 0.1)],
    'o': [(0, 0), (0.3, 0.5), (0.52, 0.95), (0.26, 0.9), (0.1, 0.5), (0.2, 0.08),
          (0.45, 0.05), (0.6, 0.45), (0.52, 0.95), (0.66, 0.84), (0.86, 0.78)],
    'r': [(0, 0), (0.2, 0.6), (0.3, 0.95), (0.44, 0.84), (0.6, 0.92), (0.6, 0.6),
          (0.62, 0.2), (0.7, 0.0), (0.86, 0.1)],
    's': [(0, 0), (0.3, 0.6), (0.45, 1.0), (0.6, 0.6), (0.62, 0.25), (0.45, 0.02),
          (0.2, 0.08), (0.42, 0.04), (0.7, 0.05), (0.82, 0.16)],
    't': [(0, 0), (0.3, 0.7), (0.46, 1.7), (0.4, 1.0), (0.38, 0.3), (0.46, 0.03),
          (0.66, 0.03), (0.78, 0.15)],
    'u': [(0, 0), (0.15, 0.5), (0.2, 0.95), (0.15, 0.4), (0.25, 0.05), (0.45, 0.05),
          (0.6, 0.4), (0.7, 0.95), (0.65, 0.4), (0.7, 0.05), (0.86, 0.0), (0.96, 0.1)],
}
# Separate strokes written after the word: the dot of an i, the cross of a t.
_MARKS = {
    'i': [(0.44, 1.45), (0.5, 1.52)],
    't': [(0.12, 1.18), (0.78, 1.24)],
}
# Rough English letter frequencies (per cent) for the letters above.
_FREQ = {'a': 8.2, 'c': 2.8, 'd': 4.3, 'e': 12.7, 'h': 6.1, 'i': 7.0, 'l': 4.0, 'm': 2.4,
         'n': 6.7, 'o': 7.5, 'r': 6.0, 's': 6.3, 't': 9.1, 'u': 2.8}

ALPHABET = ''.join(sorted(_GLYPHS))
SPACE = len(ALPHABET)      # text id of the gap between words; -1 pads
_P = max(len(g) for g in _GLYPHS.values())
_GLYPH_PTS = np.zeros((len(ALPHABET), _P, 2), np.float32)
_GLYPH_LEN = np.array([len(_GLYPHS[c]) for c in ALPHABET], np.int32)
_MARK_PTS = np.zeros((len(ALPHABET), 2, 2), np.float32)
_HAS_MARK = np.array([c in _MARKS for c in ALPHABET])
for _i, _c in enumerate(ALPHABET):
  _GLYPH_PTS[_i, :len(_GLYPHS[_c])] = _GLYPHS[_c]
  if _c in _MARKS:
    _MARK_PTS[_i] = _MARKS[_c]
del _i, _c
_GLYPH_WIDTH = _GLYPH_PTS[np.arange(len(ALPHABET)), _GLYPH_LEN - 1, 0]
_LETTER_CDF = np.cumsum([_FREQ[c] for c in ALPHABET]) / sum(_FREQ.values())


def text_to_string(ids):
  """Letter ids (SPACE between words, -1 padding) -> the written text."""
  return ''.join(' ' if i == SPACE else ALPHABET[i] for i in np.asarray(ids).tolist() if i >= 0)


# ===========================================================================
# Generator
# ===========================================================================

# Per-writer style: each value is drawn uniformly from (lo, hi) once per line;
# pass lo == hi to fix it.  Lengths are in x-heights unless noted.
STYLE_DEFAULTS = dict(
    words=(2, 3),            # words per line (integers, inclusive)
    letters=(3, 5),          # letters per word (integers, inclusive)
    slant=(-0.1, 0.5),       # shear angle in radians, > 0 leans right
    size=(6.0, 12.0),        # x-height in output units
    speed=(0.34, 0.46),      # arc length per point on straight strokes
    spacing=(0.1, 0.45),     # extra gap between joined letters
    jitter=(0.0, 0.06),      # std of the control-point noise (the sampled points get 1/4)
    width=(0.85, 1.2),       # horizontal stretch of the letters
    ascender=(0.8, 1.15),    # stretch of everything above the x-height
)
_FLOAT_STYLE = ('slant', 'size', 'speed', 'spacing', 'jitter', 'width', 'ascender')
_SUBSTEPS = 8              # spline samples per control-point segment
_CURVE_SLOWDOWN = 0.5      # x-heights: turns tighter than about this radius slow the pen
_MAX_CURVATURE = 40.0      # per x-height: caps the slowdown in cusps
_CHUNK = 256               # lines per compiled generator call


def _catmull_rom(p0, p1, p2, p3, s):
  """Centripetal Catmull-Rom between p1 and p2 at s in [0, 1): no cusps or
  self-intersections inside a segment, whatever the control-point spacing."""
  knot = lambda a, b: jnp.maximum(jnp.linalg.norm(b - a, axis=-1, keepdims=True), 1e-4) ** 0.5
  t0 = 0.0
  t1 = t0 + knot(p0, p1)
  t2 = t1 + knot(p1, p2)
  t3 = t2 + knot(p2, p3)
  u = t1 + s * (t2 - t1)
  lerp = lambda a, b, ta, tb: ((tb - u) * a + (u - ta) * b) / (tb - ta)
  a1, a2, a3 = lerp(p0, p1, t0, t1), lerp(p1, p2, t1, t2), lerp(p2, p3, t2, t3)
  b1, b2 = lerp(a1, a2, t0, t2), lerp(a2, a3, t1, t3)
  return lerp(b1, b2, t1, t2)


class _Draws:
  """Slices of one flat random vector, taken in a fixed order.

  One uniform and one normal draw per line instead of a dozen: every random
  call compiles its own copy of the generator, which dominated compile time.
  """

  def __init__(self, values):
    self.values, self.used = values, 0

  def take(self, *shape):
    n = int(np.prod(shape))
    out = self.values[self.used:self.used + n].reshape(shape)
    self.used += n
    return out


def _draw_counts(max_len, words, letters):
  """Uniform and normal numbers used per line (checked when tracing)."""
  slots = words[1] * letters[1]
  controls = slots * (_P + 2)
  num_uniform = len(_FLOAT_STYLE) + 1 + 2 * words[1] + 2 * slots
  num_normal = 1 + words[1] + 2 * slots + 2 * controls + 2 * max_len
  return num_uniform, num_normal


def _randint(u, lo, hi):
  """Integers in [lo, hi] from uniforms in [0, 1)."""
  return jnp.minimum(lo + jnp.floor(u * (hi - lo + 1)).astype(jnp.int32), hi)


def _layout(uniform, normal, style, words, letters):
  """Control points of one line in x-heights, ordered as the pen visits them.

  Returns points (C, 2), stroke key (C,) (consecutive points with equal keys
  are joined), valid (C,) and text ids.
  """
  mw, mk = words[1], letters[1]
  num_words = _randint(uniform.take(), *words)
  num_letters = _randint(uniform.take(mw), *letters)
  ids = jnp.sum(uniform.take(mw, mk)[..., None] >= jnp.asarray(_LETTER_CDF[:-1], jnp.float32),
                axis=-1)   # letters drawn with English frequencies
  word = jnp.arange(mw)[:, None]
  letter = jnp.arange(mk)[None, :]
  active = (word < num_words) & (letter < num_letters[:, None])          # (mw, mk)

  # Horizontal layout: letter boxes side by side, a wider gap between words.
  width = jnp.asarray(_GLYPH_WIDTH)[ids] * style['width']
  gap = style['spacing'] * (0.7 + 0.6 * uniform.take(mw, mk)) + 0.08
  word_gap = 0.9 + 0.7 * uniform.take(mw, 1) + 2 * style['spacing']
  last = letter == num_letters[:, None] - 1
  advance = jnp.where(active, width + gap + jnp.where(last, word_gap, 0.0), 0.0).reshape(-1)
  x0 = (jnp.cumsum(advance) - advance).reshape(mw, mk)
  y0 = 0.12 * normal.take(mw, 1) + 0.03 * normal.take(mw, mk)
  scale = 1.0 + 0.05 * normal.take(mw, mk, 1, 1)

  def place(pts):
    """Letter-box points (mw, mk, n, 2) -> line coordinates."""
    x, y = pts[..., 0] * style['width'], pts[..., 1]
    y = jnp.where(y > 1.0, 1.0 + (y - 1.0) * style['ascender'], y)
    pts = jnp.stack([x, y], -1) * scale
    return pts + jnp.stack([x0, y0], -1)[:, :, None, :]

  body = place(jnp.asarray(_GLYPH_PTS)[ids])                              # (mw, mk, P, 2)
  marks = place(jnp.asarray(_MARK_PTS)[ids])                              # (mw, mk, 2, 2)
  body_valid = active[..., None] & (jnp.arange(_P) < jnp.asarray(_GLYPH_LEN)[ids][..., None])
  mark_valid = (active & jnp.asarray(_HAS_MARK)[ids])[..., None] & jnp.ones(2, bool)

  # Visiting order: a word's letters, then its dots and crosses, then the next word.
  per_word = 2 * mk * _P
  w = jnp.broadcast_to(word[..., None], (mw, mk, 1))
  j = jnp.broadcast_to(letter[..., None], (mw, mk, 1))
  body_order = w * per_word + j * _P + jnp.arange(_P)
  mark_order = w * per_word + mk * _P + j * _P + jnp.arange(2)
  body_stroke = jnp.broadcast_to(w * (mk + 1), (mw, mk, _P))
  mark_stroke = jnp.broadcast_to(w * (mk + 1) + 1 + j, (mw, mk, 2))

  points = jnp.concatenate([body.reshape(-1, 2), marks.reshape(-1, 2)])
  valid = jnp.concatenate([body_valid.reshape(-1), mark_valid.reshape(-1)])
  order = jnp.concatenate([body_order.reshape(-1), mark_order.reshape(-1)])
  stroke = jnp.concatenate([body_stroke.reshape(-1), mark_stroke.reshape(-1)])
  perm = jnp.argsort(jnp.where(valid, order, jnp.iinfo(jnp.int32).max))
  points, valid, stroke = points[perm], valid[perm], stroke[perm]
  # Padding gets unique stroke keys so that it never joins anything.
  stroke = jnp.where(valid, stroke, -1 - jnp.arange(stroke.shape[0]))

  # Shape noise, then slant (shear) and a slightly tilted baseline.
  points = points + style['jitter'] * normal.take(*points.shape)
  points = points.at[:, 0].add(jnp.tan(style['slant']) * points[:, 1])
  c, s = jnp.cos(style['tilt']), jnp.sin(style['tilt'])
  points = jnp.stack([c * points[:, 0] - s * points[:, 1],
                      s * points[:, 0] + c * points[:, 1]], -1)

  # Text: each word's letters, SPACE between words, -1 padding.
  text_len = mw * mk + mw - 1
  words_before = jnp.cumsum(jnp.where(word[:, 0] < num_words, num_letters, 0)) - num_letters
  pos = words_before[:, None] + word + letter
  text = jnp.full((text_len,), -1, jnp.int32)
  text = text.at[jnp.where(active, pos, text_len).reshape(-1)].set(
      ids.reshape(-1).astype(jnp.int32), mode='drop')
  space_pos = jnp.where(word[:, 0] < num_words - 1, words_before + num_letters + word[:, 0],
                        text_len)
  text = text.at[space_pos].set(SPACE, mode='drop')
  return points, stroke, valid, text


def _resample(points, stroke, valid, style, max_len, normal):
  """Spline through the control points, then points at equal steps of writing time."""
  c = points.shape[0]
  same_next = valid & jnp.roll(valid, -1) & (stroke == jnp.roll(stroke, -1))
  same_next = same_next.at[-1].set(False)
  same_prev = jnp.roll(same_next, 1).at[0].set(False)
  nxt = jnp.roll(points, -1, axis=0)
  p0 = jnp.where(same_prev[:, None], jnp.roll(points, 1, axis=0), 2 * points - nxt)
  nxt2 = jnp.roll(points, -2, axis=0)
  same_next2 = jnp.roll(same_next, -1).at[-1].set(False)
  p3 = jnp.where(same_next2[:, None], nxt2, 2 * nxt - points)
  s = jnp.arange(_SUBSTEPS, dtype=jnp.float32)[:, None, None] / _SUBSTEPS
  dense = jax.vmap(lambda t: _catmull_rom(p0, points, nxt, p3, t))(s)     # (S, C, 2)
  dense = jnp.swapaxes(dense, 0, 1).reshape(-1, 2)
  sub = jnp.tile(jnp.arange(_SUBSTEPS), c)
  dense_valid = jnp.repeat(valid, _SUBSTEPS) & ((sub == 0) | jnp.repeat(same_next, _SUBSTEPS))
  dense_stroke = jnp.repeat(stroke, _SUBSTEPS)

  # Pack the valid samples to the front; the tail repeats the last one.
  n = dense.shape[0]
  count = dense_valid.sum()
  idx = jnp.nonzero(dense_valid, size=n, fill_value=0)[0]
  idx = jnp.where(jnp.arange(n) < count, idx, idx[jnp.maximum(count - 1, 0)])
  dense, dense_stroke = dense[idx], dense_stroke[idx]
  new_stroke = jnp.concatenate([jnp.ones(1, bool), dense_stroke[1:] != dense_stroke[:-1]])
  stroke_id = jnp.cumsum(new_stroke) - 1

  # Writing time: arc length, slowed down in tight turns (speed ~ curvature^(-1/3)).
  step = jnp.concatenate([jnp.zeros((1, 2)), dense[1:] - dense[:-1]])
  length = jnp.where(new_stroke, 0.0, jnp.linalg.norm(step, axis=-1))
  heading = jnp.arctan2(step[:, 1], step[:, 0])
  dh = heading[1:] - heading[:-1]
  turn = jnp.abs(jnp.arctan2(jnp.sin(dh), jnp.cos(dh)))
  joined = ~new_stroke[1:] & ~new_stroke[:-1] & (length[1:] > 1e-6) & (length[:-1] > 1e-6)
  turn = jnp.where(joined, turn, 0.0)
  curvature = turn / jnp.maximum(0.5 * (length[1:] + length[:-1]), 1e-6)
  curvature = jnp.minimum(curvature, _MAX_CURVATURE)
  # Curvature at the end of segment k and at its start, averaged.
  k_end = jnp.concatenate([curvature, jnp.zeros(1)])
  k_start = jnp.concatenate([jnp.zeros(1), k_end[:-1]])
  slow = (1.0 + _CURVE_SLOWDOWN * 0.5 * (k_start + k_end)) ** (1.0 / 3.0)
  # A pen-up jump takes one unit of time, so stroke ends never share a time stamp.
  dt = jnp.where(new_stroke, 1.0, length * slow).at[0].set(0.0)
  time = jnp.cumsum(dt)

  max_strokes = c  # generous static bound
  t_start = jax.ops.segment_min(time, stroke_id, max_strokes)
  t_end = jax.ops.segment_max(time, stroke_id, max_strokes)
  exists = jnp.arange(max_strokes) <= stroke_id[-1]
  duration = jnp.where(exists, t_end - t_start, 0.0)
  points_per_stroke = jnp.where(
      exists, jnp.maximum(2, jnp.round(duration / style['speed']).astype(jnp.int32) + 1), 0)
  ends = jnp.cumsum(points_per_stroke)
  total = ends[-1]

  i = jnp.arange(max_len)
  sid = jnp.minimum(jnp.searchsorted(ends, i, side='right'), max_strokes - 1)
  k = i - (ends[sid] - points_per_stroke[sid])
  frac = k / jnp.maximum(points_per_stroke[sid] - 1, 1)
  t = t_start[sid] + frac * duration[sid]
  # Linear interpolation in time; at a shared time stamp it takes the later sample.
  hi = jnp.clip(jnp.searchsorted(time, t, side='right'), 1, time.shape[0] - 1)
  t0, t1 = time[hi - 1], time[hi]
  w = jnp.where(t1 > t0, jnp.clip((t - t0) / jnp.where(t1 > t0, t1 - t0, 1.0), 0.0, 1.0), 0.0)
  xy = dense[hi - 1] + w[:, None] * (dense[hi] - dense[hi - 1])
  xy = xy + 0.25 * style['jitter'] * normal.take(max_len, 2)
  n_real = jnp.minimum(total, max_len)
  real = i < n_real
  pen = (k == points_per_stroke[sid] - 1) | (i == n_real - 1)
  return xy, pen, real, total


def _line(key, ranges, max_len, words, letters):
  """One line: (max_len, 3) offsets, (max_len,) mask, text ids, unclipped length."""
  k_uniform, k_normal = jax.random.split(key)
  num_uniform, num_normal = _draw_counts(max_len, words, letters)
  uniform = _Draws(jax.random.uniform(k_uniform, (num_uniform,)))
  normal = _Draws(jax.random.normal(k_normal, (num_normal,)))
  u = uniform.take(len(_FLOAT_STYLE))
  style = dict(zip(_FLOAT_STYLE, ranges[:, 0] + u * (ranges[:, 1] - ranges[:, 0])))
  style['tilt'] = 0.03 * normal.take()
  points, stroke, valid, text = _layout(uniform, normal, style, words, letters)
  xy, pen, real, total = _resample(points, stroke, valid, style, max_len, normal)
  assert (uniform.used, normal.used) == (num_uniform, num_normal), 'update _draw_counts'
  xy = xy * style['size']
  xy = xy - xy[0]
  offsets = jnp.concatenate([jnp.zeros((1, 2)), xy[1:] - xy[:-1]])
  x = jnp.concatenate([offsets, pen[:, None].astype(jnp.float32)], -1)
  mask = real.astype(jnp.float32)
  return jnp.where(real[:, None], x, 0.0), mask, text, total


@functools.partial(jax.jit, static_argnames=('max_len', 'words', 'letters'))
def _handwriting(key, start, ranges, max_len, words, letters):
  """Lines start, ..., start + _CHUNK - 1."""
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(start + jnp.arange(_CHUNK))
  line = functools.partial(_line, ranges=ranges, max_len=max_len, words=words,
                           letters=letters)
  return jax.vmap(line)(keys)


def _int_range(name, value):
  lo, hi = (int(v) for v in value)
  if not 1 <= lo <= hi:
    raise ValueError(f'handwriting: {name}={value!r} is invalid: need 1 <= lo <= hi')
  return lo, hi


def handwriting(key, n, max_len=DEFAULT_MAX_LEN, **style):
  """Generate n lines of cursive-like handwriting.

  Args:
    key: a jax PRNG key; line i is a function of (key, i) only, so a smaller
      set is a prefix of a larger one.
    n: number of lines.
    max_len: points per sequence; longer lines are cut (pen up on the last
      kept point).
    **style: (lo, hi) ranges overriding STYLE_DEFAULTS; lo == hi fixes a value.
      The uniform draws do not depend on the ranges, so the same key with
      different ranges writes the same text in a different hand.

  Returns:
    dict of numpy arrays: 'x' (n, max_len, 3) float32 raw (dx, dy, pen_up),
    'mask' (n, max_len) float32, 'text' (n, words*letters + words - 1) int32
    letter ids into ALPHABET (SPACE between words, -1 padding) and 'length'
    (n,) int32, the number of points before cutting at max_len.
  """
  unknown = set(style) - set(STYLE_DEFAULTS)
  if unknown:
    raise ValueError(f'handwriting: unknown style {sorted(unknown)}; '
                     f'allowed: {", ".join(STYLE_DEFAULTS)}')
  style = {**STYLE_DEFAULTS, **style}
  ranges = np.asarray([style[k] for k in _FLOAT_STYLE], np.float32).reshape(-1, 2)
  if np.any(ranges[:, 0] > ranges[:, 1]):
    raise ValueError(f'handwriting: every style range needs lo <= hi, got {style}')
  if n < 1 or max_len < 2:
    raise ValueError(f'handwriting: need n >= 1 and max_len >= 2, got n={n}, max_len={max_len}')
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)   # same lines as the raw key of the same seed
  generate = functools.partial(
      _handwriting, key, ranges=jnp.asarray(ranges), max_len=int(max_len),
      words=_int_range('words', style['words']),
      letters=_int_range('letters', style['letters']))
  # Fixed-size chunks: one compilation serves every n.
  chunks = jax.device_get([generate(start) for start in range(0, n, _CHUNK)])
  x, mask, text, total = (np.concatenate(parts)[:n] for parts in zip(*chunks))
  return {'x': x, 'mask': mask, 'text': text, 'length': total.astype(np.int32)}
