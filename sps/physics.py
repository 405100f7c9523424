"""Physics of the SPS scenes, integrated with `lax.scan`: a bouncing ball and two orbiting
bodies, their random initial states and the rules that reject unusable sequences.

Bouncing ball (units as in the released data: g = 10, dt = 0.2 per frame):
  positions are (x, y, z) with x to the right, y up and z the depth *away*
  from the camera, as in the released file names.  The ball rests on the
  ground when y = 0.

Two bodies (G = 1, unit masses, dt = 4 per frame):
  positions are (xA, yA, zA, xB, yB, zB) in a frame with x to the right,
  y the depth away from the camera and z up.

Two-body rules: energy, collision, radius 7, occlusion, depth variation.  Ball
rule (not in the paper's recipe): the projected centre stays inside the image in
every frame (~4% rejected).  The camera for these rules is sps.render's.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sps.render import BODY_RADIUS, CAMERAS, project

# --- bouncing ball physics -------------------------------------------------
GRAVITY = 10.0
RESTITUTION = 0.9          # speed kept at each bounce (19% energy loss)
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
ENERGY_RANGE = (-0.10, -0.07)
POSITION_STD = 2.5         # body A relative to the centre of mass
COM_STD = 1.75
MAX_RADIUS = 7.0
MIN_DEPTH_SPAN = 2.0       # range of the A-B depth difference over a sequence
SUBSTEPS = 100             # leapfrog steps per frame (h = 0.04 for dt = 4)


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


def ball_candidate(key, num_frames=20, dt=0.2):
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
  return ball_candidate(key, num_frames, dt)[0]


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
  apparent = (jnp.arcsin(jnp.minimum(BODY_RADIUS / da, 1.0))
              + jnp.arcsin(jnp.minimum(BODY_RADIUS / db, 1.0)))
  return sep < apparent


@functools.partial(jax.jit, static_argnames='num_frames')
def two_body_trajectory(key, num_frames=25, dt=4.0):
  """Positions (T, 6) of bodies A and B, and whether the sequence passes the rules."""
  pos, vel, min_sep, max_rad = two_body_rollout(*two_body_initial_state(key), num_frames, dt)
  return pos, two_body_validity(pos, vel, min_sep, max_rad)
