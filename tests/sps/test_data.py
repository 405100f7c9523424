"""Tests for the synthetic SPS datasets: physics, rejection rules, renderer, I/O."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from sps import data as D

G10 = D.GRAVITY


# --------------------------------------------------------------------------
# Bouncing ball physics
# --------------------------------------------------------------------------

def test_free_fall_matches_analytic():
  pos0, vel0 = np.array([0.3, 1.0, 0.5]), np.array([0.5, 3.0, 1.0])
  dt = 0.05
  pos, vel = D.ball_rollout(pos0, vel0, num_frames=16, dt=dt)  # first contact at t = 0.84
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
  y, vy = D.ball_vertical_step(jnp.float32(1.0), jnp.float32(0.0), t_hit + eps)
  np.testing.assert_allclose(vy, v_up - G10 * eps, atol=1e-5)
  np.testing.assert_allclose(y, v_up * eps - 0.5 * G10 * eps ** 2, atol=1e-5)
  # Apex after the bounce: height v_up^2 / 2g = 0.81, vertical speed 0.
  y, vy = D.ball_vertical_step(jnp.float32(1.0), jnp.float32(0.0), t_hit + v_up / G10)
  np.testing.assert_allclose(y, v_up ** 2 / (2 * G10), atol=1e-5)
  np.testing.assert_allclose(vy, 0.0, atol=1e-5)


def test_max_height_after_bounce_in_fine_rollout():
  pos, _ = D.ball_rollout([0.0, 1.0, 0.0], [0.0, 2.0, 0.0], num_frames=1200, dt=1e-3)
  y = np.asarray(pos[:, 1])
  bounce = np.argmin(y[:800])  # first contact is at t = 0.69
  v_hit = np.sqrt(2.0 ** 2 + 2 * G10 * 1.0)
  np.testing.assert_allclose(y[bounce:].max(), (0.9 * v_hit) ** 2 / (2 * G10), atol=2e-5)


def test_large_steps_equal_small_steps_across_several_bounces():
  # One 3 s step covers several bounces; it must agree with 300 small steps.
  big = D.ball_vertical_step(jnp.float32(1.0), jnp.float32(4.0), 3.0)
  pos, vel = D.ball_rollout([0.0, 1.0, 0.0], [0.0, 4.0, 0.0], num_frames=301, dt=0.01)
  np.testing.assert_allclose(big[0], pos[-1, 1], atol=1e-4)
  np.testing.assert_allclose(big[1], vel[-1, 1], atol=1e-4)
  assert np.all(np.asarray(pos[:, 1]) >= 0.0)


def test_ball_trajectory_recipe():
  keys = jax.random.split(jax.random.key(0), 256)
  pos = np.asarray(jax.vmap(D.bouncing_ball_trajectory)(keys))
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
  pos0, vel0 = jax.vmap(D.two_body_initial_state)(keys)
  pos, vel, min_sep, max_rad = jax.vmap(D.two_body_rollout)(pos0, vel0)
  valid = jax.vmap(D.two_body_validity)(pos, vel, min_sep, max_rad)
  return keys, np.asarray(pos), np.asarray(vel), np.asarray(valid)


def test_two_body_conserves_energy_and_centre_of_mass():
  _, pos, vel, valid = _two_body_batch()
  assert valid.sum() > 50
  energy = np.asarray(D.two_body_energy(pos[valid], vel[valid]))
  drift = np.abs(energy - energy[:, :1]).max(axis=1) / np.abs(energy[:, 0])
  assert drift.max() < 1e-3  # leapfrog, 100 substeps per frame
  com = (pos[valid, :, :3] + pos[valid, :, 3:]) / 2
  np.testing.assert_allclose(com, np.broadcast_to(com[:, :1], com.shape), atol=1e-4)
  np.testing.assert_allclose(vel[valid, :, :3] + vel[valid, :, 3:], 0.0, atol=1e-5)


def _check_two_body_rules(pos):
  a, b = pos[..., :3], pos[..., 3:]
  assert np.linalg.norm(a - b, axis=-1).min() >= 2 * D.BODY_RADIUS
  assert np.linalg.norm(a, axis=-1).max() <= D.MAX_RADIUS
  assert np.linalg.norm(b, axis=-1).max() <= D.MAX_RADIUS
  assert not np.asarray(D._occluded(pos)).any()
  gap = a[..., 1] - b[..., 1]
  assert (gap.max(-1) - gap.min(-1)).min() >= D.MIN_DEPTH_SPAN


def test_rejection_rules_hold_on_valid_candidates():
  _, pos, vel, valid = _two_body_batch()
  assert 0 < valid.mean() < 1
  _check_two_body_rules(pos[valid])
  energy = np.asarray(D.two_body_energy(pos[valid, 0], vel[valid, 0]))
  assert energy.min() >= D.ENERGY_RANGE[0] and energy.max() <= D.ENERGY_RANGE[1]


def test_dataset_positions_are_valid_candidates():
  seed, n = 5, 24
  ds = D.make_dataset('two_body', n, seed, 'train')
  _check_two_body_rules(ds['positions'])
  # They are exactly the valid candidates of the first rejection round, in order,
  # so the energy rule (checked on the full state) holds for them too.
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 0), 0)
  keys = jax.random.split(key, D._BATCH)[:128]
  pos, valid = jax.vmap(D.two_body_trajectory)(keys)
  # Not bitwise: jit fuses the integrator differently from eager vmap.
  np.testing.assert_allclose(ds['positions'], np.asarray(pos)[np.asarray(valid)][:n], atol=1e-3)


# --------------------------------------------------------------------------
# Renderer
# --------------------------------------------------------------------------

def _pixel(frame, rc):
  r, c = np.round(np.asarray(rc)).astype(int)
  return np.asarray(frame)[r, c]


def _is_green(px):
  return px[1] > 0.5 and px[1] > px[0] + 0.3 and px[1] > px[2] + 0.3


def _is_magenta(px):
  return px[0] > 0.5 and px[2] > 0.5 and px[1] < 0.3


def test_ball_rendered_at_its_projection():
  pos = jnp.asarray([[0.0, 1.0, 2.0], [-2.0, 0.0, 1.0], [2.0, 3.0, 4.0]])
  frames = D.render_bouncing_ball(pos)
  assert frames.shape == (3, 32, 32, 3) and frames.dtype == jnp.float32
  rc = D.project(pos, 'bouncing_ball')
  for t in range(3):
    assert _is_green(_pixel(frames[t], rc[t]))
  # The top rows see the sky above the horizon: plain background grey.
  np.testing.assert_allclose(frames[:, 0, :], D.BACKGROUND, atol=1e-6)
  # Ground grid: some dark pixels in the lower half, none in the sky.
  assert np.asarray(frames[0, 16:]).min() < 0.25


def test_ball_is_shaded():
  frame = np.asarray(D.render_bouncing_ball(jnp.asarray([[0.0, 2.0, 0.0]]))[0])
  green = frame[..., 1][(frame[..., 1] > frame[..., 0] + 0.2)]
  assert green.size > 20 and green.max() - green.min() > 0.3


def test_two_body_colours_and_occlusion():
  pos = jnp.asarray([[-2.0, 0.0, 1.0, 2.0, 1.0, -1.0]])
  frame = D.render_two_body(pos)[0]
  rc = D.project(pos[0], 'two_body')
  assert rc.shape == (2, 2)
  assert _is_green(_pixel(frame, rc[0]))
  assert _is_magenta(_pixel(frame, rc[1]))
  np.testing.assert_allclose(frame[0, 0], D.BACKGROUND, atol=1e-6)
  # Bodies on one line of sight: the nearer one (smaller y) is visible.
  centre = (15.5, 15.5)
  front_a = D.render_two_body(jnp.asarray([[0.0, -3.0, 0.0, 0.0, 3.0, 0.0]]))[0]
  front_b = D.render_two_body(jnp.asarray([[0.0, 3.0, 0.0, 0.0, -3.0, 0.0]]))[0]
  assert _is_green(np.asarray(front_a)[15, 15]) and _is_green(np.asarray(front_a)[16, 16])
  assert _is_magenta(np.asarray(front_b)[15, 15]) and _is_magenta(np.asarray(front_b)[16, 16])
  np.testing.assert_allclose(D.project(jnp.zeros(3), 'two_body'), centre, atol=1e-5)


def test_windowed_render_equals_full_render():
  for scene, render in (('bouncing_ball', D.render_bouncing_ball),
                        ('two_body', D.render_two_body)):
    pos = D.sample_positions(scene, 4, jax.random.key(3), D.DEFAULT_NUM_FRAMES[scene])
    pos = pos.reshape(-1, pos.shape[-1])  # all frames as one sequence
    np.testing.assert_allclose(render(pos), render(pos, window=32), atol=1e-6)


# --------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------

@pytest.mark.parametrize('scene,frames,dim', [('bouncing_ball', 20, 3), ('two_body', 25, 6)])
def test_make_dataset(scene, frames, dim):
  ds = D.make_dataset(scene, 8, seed=1, split='train')
  assert ds['frames'].shape == (8, frames, 32, 32, 3)
  assert ds['positions'].shape == (8, frames, dim)
  assert ds['frames'].dtype == np.float32 and ds['positions'].dtype == np.float32
  assert ds['frames'].min() >= 0.0 and ds['frames'].max() <= 1.0
  again = D.make_dataset(scene, 8, seed=1, split='train')
  np.testing.assert_array_equal(ds['frames'], again['frames'])
  np.testing.assert_array_equal(ds['positions'], again['positions'])
  prefix = D.make_dataset(scene, 3, seed=1, split='train')
  np.testing.assert_array_equal(prefix['positions'], ds['positions'][:3])
  evl = D.make_dataset(scene, 8, seed=1, split='eval')
  other = D.make_dataset(scene, 8, seed=2, split='train')
  for ds2 in (evl, other):
    assert not np.any(np.all(np.isclose(ds2['positions'][:, None], ds['positions'][None]),
                             axis=(2, 3)))


def test_make_dataset_options():
  ds = D.make_dataset('bouncing_ball', 2, seed=0, split='eval', num_frames=5, image_size=16)
  assert ds['frames'].shape == (2, 5, 16, 16, 3) and ds['positions'].shape == (2, 5, 3)


# --------------------------------------------------------------------------
# Folder loading
# --------------------------------------------------------------------------

def _write_png(path, img):
  Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path)


def test_load_folder_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  frames = rng.uniform(size=(2, 4, 32, 32, 3)).astype(np.float32)
  positions = rng.uniform(-3, 3, size=(2, 4, 3)).round(3).astype(np.float32)
  for s, name in enumerate(['2', '10']):  # numeric, not lexicographic, order
    os.makedirs(tmp_path / name)
    for t in (3, 0, 2, 1):
      x, y, z = positions[s, t]
      img = frames[s, t]
      if s == 1:  # the released format, at a higher resolution
        fname = f'{t}.[{x}, {y}, {z}].png'
        img = np.kron(img, np.ones((2, 2, 1)))
      else:
        fname = f'{t}_{x}_{y}_{z}.png'
      _write_png(tmp_path / name / fname, img)
  ds = D.load_folder(str(tmp_path))
  assert ds['frames'].shape == (2, 4, 32, 32, 3) and ds['frames'].dtype == np.float32
  np.testing.assert_allclose(ds['positions'], positions, atol=1e-6)
  np.testing.assert_allclose(ds['frames'], frames, atol=1 / 255)
  assert D.load_folder(str(tmp_path), num_frames=3)['frames'].shape == (2, 3, 32, 32, 3)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

def test_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="expected one of \\('bouncing_ball', 'two_body'\\)"):
    D.make_dataset('pendulum', 4, 0, 'train')
  with pytest.raises(ValueError, match='unknown scene'):
    D.project(jnp.zeros(3), 'pendulum')
  with pytest.raises(ValueError, match='unknown split'):
    D.make_dataset('two_body', 4, 0, 'test')
  with pytest.raises(ValueError, match='not found'):
    D.load_folder(str(tmp_path / 'missing'))
  with pytest.raises(ValueError, match='no PNG sequences'):
    D.load_folder(str(tmp_path))
