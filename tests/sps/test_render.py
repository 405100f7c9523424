"""Tests for the SPS renderer: projection, colours, shading, occlusion, windowing."""

import jax
import jax.numpy as jnp
import numpy as np

from sps import data as D
from sps import render as R


def _pixel(frame, rc):
  r, c = np.round(np.asarray(rc)).astype(int)
  return np.asarray(frame)[r, c]


def _is_green(px):
  return px[1] > 0.5 and px[1] > px[0] + 0.3 and px[1] > px[2] + 0.3


def _is_magenta(px):
  return px[0] > 0.5 and px[2] > 0.5 and px[1] < 0.3


def test_ball_rendered_at_its_projection():
  pos = jnp.asarray([[0.0, 1.0, 2.0], [-2.0, 0.0, 1.0], [2.0, 3.0, 4.0]])
  frames = R.render_bouncing_ball(pos)
  assert frames.shape == (3, 32, 32, 3) and frames.dtype == jnp.float32
  rc = R.project(pos, 'bouncing_ball')
  for t in range(3):
    assert _is_green(_pixel(frames[t], rc[t]))
  # The top rows see the sky above the horizon: plain background grey.
  np.testing.assert_allclose(frames[:, 0, :], R.BACKGROUND, atol=1e-6)
  # Ground grid: some dark pixels in the lower half, none in the sky.
  assert np.asarray(frames[0, 16:]).min() < 0.25


def test_ball_is_shaded():
  frame = np.asarray(R.render_bouncing_ball(jnp.asarray([[0.0, 2.0, 0.0]]))[0])
  green = frame[..., 1][(frame[..., 1] > frame[..., 0] + 0.2)]
  assert green.size > 20 and green.max() - green.min() > 0.3


def test_two_body_colours_and_occlusion():
  pos = jnp.asarray([[-2.0, 0.0, 1.0, 2.0, 1.0, -1.0]])
  frame = R.render_two_body(pos)[0]
  rc = R.project(pos[0], 'two_body')
  assert rc.shape == (2, 2)
  assert _is_green(_pixel(frame, rc[0]))
  assert _is_magenta(_pixel(frame, rc[1]))
  np.testing.assert_allclose(frame[0, 0], R.BACKGROUND, atol=1e-6)
  # Bodies on one line of sight: the nearer one (smaller y) is visible.
  centre = (15.5, 15.5)
  front_a = R.render_two_body(jnp.asarray([[0.0, -3.0, 0.0, 0.0, 3.0, 0.0]]))[0]
  front_b = R.render_two_body(jnp.asarray([[0.0, 3.0, 0.0, 0.0, -3.0, 0.0]]))[0]
  assert _is_green(np.asarray(front_a)[15, 15]) and _is_green(np.asarray(front_a)[16, 16])
  assert _is_magenta(np.asarray(front_b)[15, 15]) and _is_magenta(np.asarray(front_b)[16, 16])
  np.testing.assert_allclose(R.project(jnp.zeros(3), 'two_body'), centre, atol=1e-5)


def test_windowed_render_equals_full_render():
  for scene, render in (('bouncing_ball', R.render_bouncing_ball),
                        ('two_body', R.render_two_body)):
    pos = D.sample_positions(scene, 4, jax.random.key(3), D.DEFAULT_NUM_FRAMES[scene])
    pos = pos.reshape(-1, pos.shape[-1])  # all frames as one sequence
    np.testing.assert_allclose(render(pos), render(pos, window=32), atol=1e-6)
