"""Camera and renderer for the SPS scenes: pinhole projection and analytic ray casting of
spheres, antialiased by supersampling; a pure JAX function of the positions per frame.

Conventions
-----------
Images are float32 in [0, 1], NHWC, RGB.  Pixel coordinates are (row, col)
with row 0 at the top and pixel centres at integers.  Positions are given in
each scene's dataset convention (see sps.physics).

Bouncing ball: the scene places the ball at (x, y, -z).  The ball (radius 0.5)
rests on the ground when y = 0; the ground plane is y = -0.5 and carries a dark
grid with 2-unit spacing.  The pinhole camera sits at (0, 4, 2), looks at
(0, 0, -5) with y up, and has a square field of view with tan(half angle) = 0.8
(the released frustum).

Two bodies: the camera sits at (0, -11.5, 0) looking at the origin with the
same field of view, so any centre within radius 7 of the origin projects inside
the image.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

SCENES = ('bouncing_ball', 'two_body')

# Sphere sizes: drawn here, and the two-body collision and occlusion rules use BODY_RADIUS.
BALL_RADIUS = 0.5
BODY_RADIUS = 0.8

# --- rendering -------------------------------------------------------------
TAN_HALF_FOV = 0.8
SUPERSAMPLE = 4
AMBIENT = 0.2
BACKGROUND = 0.4
GREEN = (0.05, 0.9, 0.05)
MAGENTA = (0.9, 0.05, 0.9)
GROUND_Y = -BALL_RADIUS
GRID_SPACING = 2.0
GRID_EXTENT = 100.0
GRID_MAX_DEPTH = 15.0      # the released renderer's far plane clipped the grid here
GRID_LINE_PX = 0.5         # line width in output pixels
# Output pixels ray-cast around each sphere (for 32x32 images); the spheres'
# apparent diameters stay well below these (checked in the tests).
BALL_WINDOW = 16
BODY_WINDOW = 12

CAMERAS = {
    'bouncing_ball': dict(eye=(0.0, 4.0, 2.0), look_at=(0.0, 0.0, -5.0), up=(0.0, 1.0, 0.0)),
    'two_body': dict(eye=(0.0, -11.5, 0.0), look_at=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)),
}


def check_scene(scene):
  if scene not in SCENES:
    raise ValueError(f'unknown scene {scene!r}; expected one of {SCENES}')


def _camera_basis(scene):
  cam = CAMERAS[scene]
  eye, look, up = (np.asarray(cam[k], np.float32) for k in ('eye', 'look_at', 'up'))
  forward = (look - eye) / np.linalg.norm(look - eye)
  right = np.cross(forward, up)
  right /= np.linalg.norm(right)
  true_up = np.cross(right, forward)
  return eye, right, true_up, forward


def _scene_points(points, scene):
  """Map dataset positions (..., 3) to scene coordinates (ball depth is -z)."""
  points = jnp.asarray(points, jnp.float32)
  if scene == 'bouncing_ball':
    points = points * jnp.asarray([1.0, 1.0, -1.0], jnp.float32)
  return points


def _project_scene(p, scene, image_size):
  """(row, col) of scene-coordinate points (..., 3)."""
  eye, right, up, forward = _camera_basis(scene)
  p = p - eye
  focal = image_size / 2 / TAN_HALF_FOV
  centre = (image_size - 1) / 2
  depth = p @ forward
  return jnp.stack([centre - focal * (p @ up) / depth,
                    centre + focal * (p @ right) / depth], axis=-1)


def project(points, scene, image_size=32):
  """Pixel (row, col) of 3-D points (..., 3) given in the scene's dataset
  convention.  For 'two_body', (..., 6) inputs give (..., 2, 2): A then B."""
  check_scene(scene)
  points = jnp.asarray(points, jnp.float32)
  if scene == 'two_body' and points.shape[-1] == 6:
    points = points.reshape(points.shape[:-1] + (2, 3))
  return _project_scene(_scene_points(points, scene), scene, image_size)


@functools.lru_cache(maxsize=None)
def _rays(scene, size):
  """Unit ray directions (size, size, 3) through supersampled pixel centres."""
  eye, right, up, forward = _camera_basis(scene)
  focal = size / 2 / TAN_HALF_FOV
  c = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) / focal
  xc, yc = np.meshgrid(c, -c)  # row index grows downwards
  d = xc[..., None] * right + yc[..., None] * up + forward
  return (d / np.linalg.norm(d, axis=-1, keepdims=True)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _background(scene, image_size):
  """Supersampled background (size, size, 3): grey, plus the ground grid for
  the ball scene.  It does not depend on the objects, so it is computed once."""
  size = image_size * SUPERSAMPLE
  bg = np.full((size, size, 3), BACKGROUND, np.float32)
  if scene != 'bouncing_ball':
    return bg
  d = _rays(scene, size).astype(np.float64)
  eye, _, _, forward = (v.astype(np.float64) for v in _camera_basis(scene))
  down = d[..., 1] < 0
  t = np.where(down, (GROUND_Y - eye[1]) / np.where(down, d[..., 1], -1.0), 0.0)
  p = eye + t[..., None] * d
  eye_depth = t * (d @ forward)
  # Lines keep a constant width on screen, as GL lines do.
  half_width = 0.5 * GRID_LINE_PX * eye_depth * 2 * TAN_HALF_FOV / image_size
  off = lambda u: np.abs(u - GRID_SPACING * np.round(u / GRID_SPACING))
  on_line = np.minimum(off(p[..., 0]), off(p[..., 2])) < half_width
  on_grid = (down & (eye_depth <= GRID_MAX_DEPTH)
             & (np.abs(p[..., 0]) <= GRID_EXTENT) & (np.abs(p[..., 2]) <= GRID_EXTENT))
  bg[on_line & on_grid] = 0.0
  return bg


def _pool(x):
  """Antialias: average SUPERSAMPLE x SUPERSAMPLE samples per output pixel."""
  h, w = x.shape[0] // SUPERSAMPLE, x.shape[1] // SUPERSAMPLE
  return x.reshape(h, SUPERSAMPLE, w, SUPERSAMPLE, 3).mean(axis=(1, 3))


def _shade_window(rays, bg, centres, colors, radius, eye, light):
  """Ray-cast all spheres for a block of rays (h, w, 3) over background bg."""
  oc = eye - centres                                    # (S, 3)
  b = rays @ oc.T                                       # (h, w, S)
  disc = b * b - (jnp.sum(oc * oc, -1) - radius ** 2)
  t = -b - jnp.sqrt(jnp.maximum(disc, 0.0))
  t = jnp.where((disc > 0) & (t > 0), t, jnp.inf)
  nearest = jnp.argmin(t, axis=-1)                      # depth test between spheres
  t_near = jnp.min(t, axis=-1)
  normal = (eye + t_near[..., None] * rays - centres[nearest]) / radius
  lambert = jnp.maximum(normal @ light, 0.0)
  rgb = jnp.clip(colors[nearest] * (AMBIENT + lambert)[..., None], 0.0, 1.0)
  return jnp.where(jnp.isfinite(t_near)[..., None], rgb, bg)


def _render_frame(centres, colors, radius, scene, image_size, window):
  """Render one frame with spheres at `centres` (S, 3) in scene coordinates.

  Only a `window` x `window` block of output pixels around each sphere's
  projection is ray-cast (each block sees all spheres, so occlusion stays
  correct); the rest of the image is the precomputed background.
  """
  ss = SUPERSAMPLE
  rays = jnp.asarray(_rays(scene, image_size * ss))
  bg_np = _background(scene, image_size)
  bg = jnp.asarray(bg_np)
  eye, _, up, forward = _camera_basis(scene)
  # Directional light fixed relative to the camera: from the viewer, a bit above
  # (the released renderer's light at (0, 1, 4) in eye coordinates).
  light = up - 4 * forward
  light = jnp.asarray(light / np.linalg.norm(light))
  window = min(window, image_size)
  frame = jnp.asarray(_pool(bg_np))
  for centre in centres:  # S is 1 or 2: unrolled at trace time
    rc = _project_scene(centre, scene, image_size)
    start = jnp.clip(jnp.round(rc - window / 2).astype(jnp.int32), 0, image_size - window)
    block = lambda x: jax.lax.dynamic_slice(x, (start[0] * ss, start[1] * ss, 0),
                                            (window * ss, window * ss, 3))
    rgb = _shade_window(block(rays), block(bg), centres, colors, radius, eye, light)
    frame = jax.lax.dynamic_update_slice(frame, _pool(rgb), (start[0], start[1], 0))
  return frame


@functools.partial(jax.jit, static_argnames=('image_size', 'window'))
def render_bouncing_ball(positions, image_size=32, window=BALL_WINDOW):
  """(T, 3) ball positions -> (T, H, W, 3) frames.

  Only `window` output pixels (per 32) around the ball are ray-cast, which is
  exact for every position the dataset can produce; for arbitrary positions
  (e.g. very close to the camera) pass window=image_size.
  """
  colors = jnp.asarray([GREEN], jnp.float32)
  frame = lambda p: _render_frame(_scene_points(p, 'bouncing_ball')[None], colors, BALL_RADIUS,
                                  'bouncing_ball', image_size, _scaled(window, image_size))
  return jax.vmap(frame)(jnp.asarray(positions, jnp.float32))


@functools.partial(jax.jit, static_argnames=('image_size', 'window'))
def render_two_body(positions, image_size=32, window=BODY_WINDOW):
  """(T, 6) positions of A (green) and B (magenta) -> (T, H, W, 3) frames.

  Windowed like render_bouncing_ball; exact for centres within radius 7.
  """
  colors = jnp.asarray([GREEN, MAGENTA], jnp.float32)
  frame = lambda p: _render_frame(p.reshape(2, 3), colors, BODY_RADIUS,
                                  'two_body', image_size, _scaled(window, image_size))
  return jax.vmap(frame)(jnp.asarray(positions, jnp.float32))


def _scaled(window, image_size):
  """Windows are given for 32x32 images; keep their share of other sizes."""
  return int(np.ceil(window * image_size / 32))
