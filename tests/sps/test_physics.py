"""Tests for the SPS physics: bouncing ball, two bodies and their rejection rules."""

import jax
import jax.numpy as jnp
import numpy as np

from sps import data as D
from sps import physics as P
from sps import render as R

G10 = P.GRAVITY


# --------------------------------------------------------------------------
# Bouncing ball physics
# --------------------------------------------------------------------------

def test_free_fall_matches_analytic():
  pos0, vel0 = np.array([0.3, 1.0, 0.5]), np.array([0.5, 3.0, 1.0])
  dt = 0.05
  pos, vel = P.ball_rollout(pos0, vel0, num_frames=16, dt=dt)  # first contact at t = 0.84
  t = dt * np.arange(16)
  np.testing.assert_allclose(pos[:, 1], 1.0 + 3.0 * t - 0.5 * G10 * t ** 2, atol=1e-5)
  np.testing.assert_allclose(vel[:, 1], 3.0 - G10 * t, atol=1e-5)
  np.testing.assert_allclose(pos[:, 0], 0.3 + 0.5 * t, atol=1e-5)
  np.testing.assert_allclose(pos[:, 2], 0.5 + 1.0 * t, atol=1e-5)


def test_bounce_keeps_90_percent_of_speed():
  # Dropped from y = 1: contact at sqrt(2/g) with speed sqrt(2g).
  t_hit, v_hit = np.sqrt(2 / G10), np.sqrt(2 * G10)
  v_up = 0.9 * v_hit
  eps = 1e-3
  y, vy = P.ball_vertical_step(jnp.float32(1.0), jnp.float32(0.0), t_hit + eps)
  np.testing.assert_allclose(vy, v_up - G10 * eps, atol=1e-5)
  np.testing.assert_allclose(y, v_up * eps - 0.5 * G10 * eps ** 2, atol=1e-5)
  # Apex after the bounce: height v_up^2 / 2g = 0.81, vertical speed 0.
  y, vy = P.ball_vertical_step(jnp.float32(1.0), jnp.float32(0.0), t_hit + v_up / G10)
  np.testing.assert_allclose(y, v_up ** 2 / (2 * G10), atol=1e-5)
  np.testing.assert_allclose(vy, 0.0, atol=1e-5)


def test_max_height_after_bounce_in_fine_rollout():
  pos, _ = P.ball_rollout([0.0, 1.0, 0.0], [0.0, 2.0, 0.0], num_frames=1200, dt=1e-3)
  y = np.asarray(pos[:, 1])
  bounce = np.argmin(y[:800])  # first contact is at t = 0.69
  v_hit = np.sqrt(2.0 ** 2 + 2 * G10 * 1.0)
  np.testing.assert_allclose(y[bounce:].max(), (0.9 * v_hit) ** 2 / (2 * G10), atol=2e-5)


def test_large_steps_equal_small_steps_across_several_bounces():
  # One 3 s step covers several bounces; it must agree with 300 small steps.
  big = P.ball_vertical_step(jnp.float32(1.0), jnp.float32(4.0), 3.0)
  pos, vel = P.ball_rollout([0.0, 1.0, 0.0], [0.0, 4.0, 0.0], num_frames=301, dt=0.01)
  np.testing.assert_allclose(big[0], pos[-1, 1], atol=1e-4)
  np.testing.assert_allclose(big[1], vel[-1, 1], atol=1e-4)
  assert np.all(np.asarray(pos[:, 1]) >= 0.0)


def test_ball_trajectory_recipe():
  keys = jax.random.split(jax.random.key(0), 256)
  pos = np.asarray(jax.vmap(P.bouncing_ball_trajectory)(keys))
  assert pos.shape == (256, 20, 3)
  np.testing.assert_allclose(pos[:, 0, 1], 1.0)
  assert pos[:, 0, 0].min() >= -3.0 and pos[:, 0, 0].max() <= 3.0
  assert pos[:, 0, 2].min() >= 0.0 and pos[:, 0, 2].max() <= 3.0
  assert pos[:, :, 1].min() >= 0.0


# --------------------------------------------------------------------------
# Two bodies
# --------------------------------------------------------------------------

def _two_body_batch(n=256, seed=0):
  keys = jax.random.split(jax.random.key(seed), n)
  pos0, vel0 = jax.vmap(P.two_body_initial_state)(keys)
  pos, vel, min_sep, max_rad = jax.vmap(P.two_body_rollout)(pos0, vel0)
  valid = jax.vmap(P.two_body_validity)(pos, vel, min_sep, max_rad)
  return keys, np.asarray(pos), np.asarray(vel), np.asarray(valid)


def test_two_body_conserves_energy_and_centre_of_mass():
  _, pos, vel, valid = _two_body_batch()
  assert valid.sum() > 50
  energy = np.asarray(P.two_body_energy(pos[valid], vel[valid]))
  drift = np.abs(energy - energy[:, :1]).max(axis=1) / np.abs(energy[:, 0])
  assert drift.max() < 1e-3  # leapfrog, 100 substeps per frame
  com = (pos[valid, :, :3] + pos[valid, :, 3:]) / 2
  np.testing.assert_allclose(com, np.broadcast_to(com[:, :1], com.shape), atol=1e-4)
  np.testing.assert_allclose(vel[valid, :, :3] + vel[valid, :, 3:], 0.0, atol=1e-5)


def _check_two_body_rules(pos):
  a, b = pos[..., :3], pos[..., 3:]
  assert np.linalg.norm(a - b, axis=-1).min() >= 2 * R.BODY_RADIUS
  assert np.linalg.norm(a, axis=-1).max() <= P.MAX_RADIUS
  assert np.linalg.norm(b, axis=-1).max() <= P.MAX_RADIUS
  assert not np.asarray(P._occluded(pos)).any()
  gap = a[..., 1] - b[..., 1]
  assert (gap.max(-1) - gap.min(-1)).min() >= P.MIN_DEPTH_SPAN


def test_rejection_rules_hold_on_valid_candidates():
  _, pos, vel, valid = _two_body_batch()
  assert 0 < valid.mean() < 1
  _check_two_body_rules(pos[valid])
  energy = np.asarray(P.two_body_energy(pos[valid, 0], vel[valid, 0]))
  assert energy.min() >= P.ENERGY_RANGE[0] and energy.max() <= P.ENERGY_RANGE[1]


def test_dataset_positions_are_valid_candidates():
  seed, n = 5, 24
  ds = D.make_dataset('two_body', n, seed, 'train')
  _check_two_body_rules(ds['positions'])
  # They are exactly the valid candidates of the first rejection round, in order,
  # so the energy rule (checked on the full state) holds for them too.
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 0), 0)
  keys = jax.random.split(key, D._BATCH)[:128]
  pos, valid = jax.vmap(P.two_body_trajectory)(keys)
  # Not bitwise: jit fuses the integrator differently from eager vmap.
  np.testing.assert_allclose(ds['positions'], np.asarray(pos)[np.asarray(valid)][:n], atol=1e-3)
