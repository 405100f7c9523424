"""Synthetic video datasets for SPS: a bouncing ball and two orbiting bodies.

Everything per sequence is a pure JAX function (physics integrated with
`lax.scan`, rendering by analytic ray casting) that is `vmap`-ed over keys and
jitted.  Datasets are deterministic functions of (scene, seed, split).

Conventions
-----------
Images are float32 in [0, 1], NHWC, RGB.  Pixel coordinates are (row, col)
with row 0 at the top and pixel centres at integers.

Bouncing ball (units as in the released data: g = 10, dt = 0.2 per frame):
  positions are (x, y, z) with x to the right, y up and z the depth *away*
  from the camera, as in the released file names.  The scene places the ball
  at (x, y, -z).  The ball (radius 0.5) rests on the ground when y = 0; the
  ground plane is y = -0.5 and carries a dark grid with 2-unit spacing.  The
  pinhole camera sits at (0, 4, 2), looks at (0, 0, -5) with y up, and has
  a square field of view with tan(half angle) = 0.8 (the released frustum).

Two bodies (G = 1, unit masses, dt = 4 per frame):
  positions are (xA, yA, zA, xB, yB, zB) in a frame with x to the right,
  y the depth away from the camera and z up.  The camera sits at
  (0, -11.5, 0) looking at the origin with the same field of view, so any
  centre within radius 7 of the origin projects inside the image.

Rejection sampling runs on the host in rounds of jitted, vmapped candidate
batches with keys fold_in(fold_in(key(seed), split), round), so a dataset is
a deterministic function of (scene, seed, split) on a given backend (CPU and
GPU float rounding can differ slightly).  Two-body rules: energy, collision,
radius 7, occlusion, depth variation.  Ball rule (not in the paper's recipe):
the projected centre stays inside the image in every frame (~4% rejected).
"""

import functools
import os
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np

SCENES = ('bouncing_ball', 'two_body')
SPLITS = ('train', 'eval')
DEFAULT_NUM_FRAMES = {'bouncing_ball': 20, 'two_body': 25}
POSITION_DIM = {'bouncing_ball': 3, 'two_body': 6}

# --- bouncing ball physics -------------------------------------------------
GRAVITY = 10.0
RESTITUTION = 0.9          # speed kept at each bounce (19% energy loss)
BALL_RADIUS = 0.5
REST_SPEED = 1e-2          # below this rebound speed the ball stays on the ground
# Start regions: (x range, z range, vx range, vz range). Horizontal speeds are small, as in
# the paper's recipe; with depth speeds up to 3 (tried first) the ball recedes to 1-2 px
# within 20 frames and a VAE learns only the background.
BALL_REGIONS = np.array([
    [[-3.0, -1.5], [0.0, 3.0], [0.2, 2.0], [-1.0, 1.0]],
    [[-1.5, 1.5], [0.0, 3.0], [-1.0, 1.0], [-1.0, 1.0]],
    [[1.5, 3.0], [0.0, 3.0], [-2.0, -0.2], [-1.0, 1.0]],
], np.float32)
BALL_Y0 = 1.0
BALL_VY_RANGE = (-8.0, 8.0)

# --- two-body physics ------------------------------------------------------
G = 1.0
BODY_RADIUS = 0.8
ENERGY_RANGE = (-0.10, -0.07)
POSITION_STD = 2.5         # body A relative to the centre of mass
COM_STD = 1.75
MAX_RADIUS = 7.0
MIN_DEPTH_SPAN = 2.0       # range of the A-B depth difference over a sequence
SUBSTEPS = 100             # leapfrog steps per frame (h = 0.04 for dt = 4)

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

_BATCH = 1024              # candidates per rejection round (fixed: keeps prefixes stable)
_RENDER_CHUNK = 8          # sequences per jitted render call (small chunks stay in cache)
_MAX_ROUNDS = 1000


def _check_scene(scene):
  if scene not in SCENES:
    raise ValueError(f'unknown scene {scene!r}; expected one of {SCENES}')


# ===========================================================================
# Bouncing ball
# ===========================================================================

@jax.jit
def ball_vertical_step(y, vy, dt):
  """Exact vertical motion over dt with bounces at y = 0.

  Free flight is integrated analytically up to the next ground contact, the
  velocity is reflected and scaled, and so on until dt is used up, so the
  result is exact however many bounces fall inside one frame.
  """
  def cond(s):
    return s[2] > 0.0

  def body(s):
    y, vy, tau = s
    # Time to reach y = 0: positive root of y + vy t - g t^2 / 2 = 0.
    t_hit = (vy + jnp.sqrt(jnp.maximum(vy * vy + 2 * GRAVITY * y, 0.0))) / GRAVITY
    hits = t_hit < tau
    s_ = jnp.where(hits, t_hit, tau)
    y_new = jnp.maximum(y + vy * s_ - 0.5 * GRAVITY * s_ * s_, 0.0)
    vy_new = vy - GRAVITY * s_
    rebound = -RESTITUTION * vy_new
    # A rebound too slow to matter ends the motion (avoids Zeno bouncing).
    resting = hits & (rebound < REST_SPEED)
    y_new = jnp.where(hits, 0.0, y_new)
    vy_new = jnp.where(hits, jnp.where(resting, 0.0, rebound), vy_new)
    tau_new = jnp.where(resting, 0.0, tau - s_)
    return y_new, vy_new, tau_new

  y, vy, _ = jax.lax.while_loop(cond, body, (y, vy, jnp.asarray(dt, y.dtype)))
  return y, vy


def ball_step(pos, vel, dt):
  """Advance (x, y, z), (vx, vy, vz) by dt: uniform motion in x and z."""
  y, vy = ball_vertical_step(pos[1], vel[1], dt)
  pos = jnp.stack([pos[0] + vel[0] * dt, y, pos[2] + vel[2] * dt])
  vel = jnp.stack([vel[0], vy, vel[2]])
  return pos, vel


@functools.partial(jax.jit, static_argnames='num_frames')
def ball_rollout(pos0, vel0, num_frames=20, dt=0.2):
  """Frames at t = 0, dt, ..., (T-1) dt.  Returns positions (T, 3), velocities (T, 3)."""
  def step(carry, _):
    pos, vel = carry
    return ball_step(pos, vel, dt), (pos, vel)

  init = (jnp.asarray(pos0, jnp.float32), jnp.asarray(vel0, jnp.float32))
  _, (pos, vel) = jax.lax.scan(step, init, None, length=num_frames)
  return pos, vel


def ball_initial_state(key):
  """y = 1, vy ~ U(-8, 8); x, z and the horizontal speeds from one of three start regions."""
  k_region, k_u, k_vy = jax.random.split(key, 3)
  region = jnp.asarray(BALL_REGIONS)[jax.random.randint(k_region, (), 0, 3)]
  lo, hi = region[:, 0], region[:, 1]
  x, z, vx, vz = lo + (hi - lo) * jax.random.uniform(k_u, (4,))
  vy = jax.random.uniform(k_vy, (), minval=BALL_VY_RANGE[0], maxval=BALL_VY_RANGE[1])
  return jnp.stack([x, jnp.float32(BALL_Y0), z]), jnp.stack([vx, vy, vz])


def _ball_candidate(key, num_frames=20, dt=0.2):
  pos, _ = ball_rollout(*ball_initial_state(key), num_frames=num_frames, dt=dt)
  # The released data dropped sequences where the ball left the picture;
  # we keep those whose projected centre stays inside the image.
  rc = project(pos, 'bouncing_ball')
  inside = jnp.all((rc >= -0.5) & (rc <= 31.5))
  return pos, inside


@functools.partial(jax.jit, static_argnames='num_frames')
def bouncing_ball_trajectory(key, num_frames=20, dt=0.2):
  """Ball centre (T, 3) as (x, y, z), z = depth away from the camera.

  Not filtered; `make_dataset` additionally keeps only trajectories whose
  projected centre stays inside the image.
  """
  return _ball_candidate(key, num_frames, dt)[0]


# ===========================================================================
# Two bodies
# ===========================================================================

def _accelerations(x):
  r = x[0] - x[1]
  inv_d3 = jnp.sum(r * r) ** -1.5
  a_a = -G * r * inv_d3  # unit masses
  return jnp.stack([a_a, -a_a])


def two_body_energy(pos, vel):
  """Total energy for unit masses; pos, vel (..., 6) as (A xyz, B xyz)."""
  pos, vel = jnp.asarray(pos), jnp.asarray(vel)
  kinetic = 0.5 * jnp.sum(vel * vel, axis=-1)
  dist = jnp.linalg.norm(pos[..., :3] - pos[..., 3:], axis=-1)
  return kinetic - G / dist


def leapfrog_step(x, v, a, h):
  """One velocity-Verlet step (symplectic, time reversible); x, v, a are (2, 3)."""
  v = v + 0.5 * h * a
  x = x + h * v
  a = _accelerations(x)
  v = v + 0.5 * h * a
  return x, v, a


@functools.partial(jax.jit, static_argnames=('num_frames', 'substeps'))
def two_body_rollout(pos0, vel0, num_frames=25, dt=4.0, substeps=SUBSTEPS):
  """Integrate from (6,) state.  Returns positions (T, 6), velocities (T, 6),
  the smallest separation and the largest distance of a body from the
  origin seen at any substep."""
  h = dt / substeps

  def frame(carry, _):
    x, v, a, min_sep, max_rad = carry
    out = (x.reshape(6), v.reshape(6))

    def sub(_, c):
      x, v, a, min_sep, max_rad = c
      x, v, a = leapfrog_step(x, v, a, h)
      min_sep = jnp.minimum(min_sep, jnp.linalg.norm(x[0] - x[1]))
      max_rad = jnp.maximum(max_rad, jnp.max(jnp.linalg.norm(x, axis=-1)))
      return x, v, a, min_sep, max_rad

    return jax.lax.fori_loop(0, substeps, sub, (x, v, a, min_sep, max_rad)), out

  x0 = jnp.asarray(pos0, jnp.float32).reshape(2, 3)
  v0 = jnp.asarray(vel0, jnp.float32).reshape(2, 3)
  init = (x0, v0, _accelerations(x0), jnp.linalg.norm(x0[0] - x0[1]),
          jnp.max(jnp.linalg.norm(x0, axis=-1)))
  # The last frame's substeps are wasted work, but keep the scan uniform.
  (_, _, _, min_sep, max_rad), (pos, vel) = jax.lax.scan(
      frame, init, None, length=num_frames)
  return pos, vel, min_sep, max_rad


def two_body_initial_state(key):
  """A ~ N(0, 2.5^2 I) about the centre of mass, B = -A, tangential velocities.

  The speed is solved from a target energy drawn uniformly in ENERGY_RANGE
  (E = v^2 - 1/(2|A|) for unit masses), so bound orbits are not wasted; the
  energy rule is still checked on the integrated state.
  """
  k_a, k_dir, k_e, k_com = jax.random.split(key, 4)
  rel = POSITION_STD * jax.random.normal(k_a, (3,))
  a = jnp.linalg.norm(rel)
  u = jax.random.normal(k_dir, (3,))
  tangent = u - jnp.dot(u, rel) / (a * a) * rel
  tangent = tangent / jnp.linalg.norm(tangent)
  energy = jax.random.uniform(k_e, (), minval=ENERGY_RANGE[0], maxval=ENERGY_RANGE[1])
  speed = jnp.sqrt(jnp.maximum(energy + 0.5 / a, 0.0))
  com = COM_STD * jax.random.normal(k_com, (3,))
  pos = jnp.concatenate([com + rel, com - rel])
  vel = jnp.concatenate([speed * tangent, -speed * tangent])
  return pos, vel


def two_body_validity(pos, vel, min_sep, max_rad):
  """All rejection rules for one sequence; returns a bool scalar."""
  energy = two_body_energy(pos[0], vel[0])
  ok_energy = (energy >= ENERGY_RANGE[0]) & (energy <= ENERGY_RANGE[1])
  ok_collision = min_sep >= 2 * BODY_RADIUS
  ok_radius = max_rad <= MAX_RADIUS
  depth_gap = pos[:, 1] - pos[:, 4]
  ok_depth = jnp.max(depth_gap) - jnp.min(depth_gap) >= MIN_DEPTH_SPAN
  ok_occlusion = ~jnp.any(_occluded(pos))
  return ok_energy & ok_collision & ok_radius & ok_depth & ok_occlusion & jnp.all(jnp.isfinite(pos))


def _occluded(pos):
  """Per frame: the two discs seen from the camera overlap."""
  eye = jnp.asarray(CAMERAS['two_body']['eye'], jnp.float32)
  ra, rb = pos[..., :3] - eye, pos[..., 3:] - eye
  da, db = jnp.linalg.norm(ra, axis=-1), jnp.linalg.norm(rb, axis=-1)
  cos = jnp.sum(ra * rb, axis=-1) / (da * db)
  sep = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
  apparent = jnp.arcsin(jnp.minimum(BODY_RADIUS / da, 1.0)) + jnp.arcsin(jnp.minimum(BODY_RADIUS / db, 1.0))
  return sep < apparent


@functools.partial(jax.jit, static_argnames='num_frames')
def two_body_trajectory(key, num_frames=25, dt=4.0):
  """Positions (T, 6) of bodies A and B, and whether the sequence passes the rules."""
  pos, vel, min_sep, max_rad = two_body_rollout(*two_body_initial_state(key), num_frames, dt)
  return pos, two_body_validity(pos, vel, min_sep, max_rad)


# ===========================================================================
# Camera and renderer
# ===========================================================================

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
  _check_scene(scene)
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


# ===========================================================================
# Datasets
# ===========================================================================

@functools.lru_cache(maxsize=None)
def _batched_candidates(scene, num_frames):
  if scene == 'bouncing_ball':
    fn = functools.partial(_ball_candidate, num_frames=num_frames)
  else:
    fn = functools.partial(two_body_trajectory, num_frames=num_frames)
  return jax.jit(jax.vmap(fn))


@functools.lru_cache(maxsize=None)
def _batched_renderer(scene, image_size):
  render = render_bouncing_ball if scene == 'bouncing_ball' else render_two_body
  return jax.jit(jax.vmap(functools.partial(render, image_size=image_size)))


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
  render = _batched_renderer(scene, image_size)
  n = len(positions)
  pad = -n % _RENDER_CHUNK
  padded = np.concatenate([positions, np.repeat(positions[-1:], pad, 0)]) if pad else positions
  chunks = [np.asarray(render(padded[i:i + _RENDER_CHUNK]))
            for i in range(0, len(padded), _RENDER_CHUNK)]
  return np.concatenate(chunks)[:n]


def make_dataset(scene, num_sequences, seed, split='train', image_size=32, num_frames=None):
  """Build a synthetic dataset.

  Returns {'frames': float32 (N, T, H, W, 3) in [0, 1],
           'positions': float32 (N, T, P)} as numpy arrays (P = 3 or 6).
  'train' and 'eval' use different keys (the split is folded into the seed).
  """
  _check_scene(scene)
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
