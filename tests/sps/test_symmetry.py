
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sps import losses
from sps import symmetry

BALL = 'T:0,2 R:0,2'
TWO_BODY = 'T:0,1,2|3,4,5 R:0,1,2|3,4,5'


@pytest.mark.parametrize('n', [2, 3])
def test_rotations_are_proper_and_orthogonal(n):
  qs = jax.vmap(lambda k: symmetry.random_rotation(k, n))(jax.random.split(jax.random.PRNGKey(0), 500))
  np.testing.assert_allclose(np.linalg.det(np.asarray(qs)), 1.0, atol=1e-5)
  np.testing.assert_allclose(jnp.einsum('bij,bkj->bik', qs, qs), np.broadcast_to(np.eye(n), qs.shape),
                             atol=1e-5)


def test_2d_rotation_angles_cover_the_circle():
  # Haar measure on SO(2): the angle is uniform on (-pi, pi]; reflections would be excluded above.
  qs = jax.vmap(lambda k: symmetry.random_rotation(k, 2))(jax.random.split(jax.random.PRNGKey(1), 4000))
  angles = np.arctan2(np.asarray(qs[:, 1, 0]), np.asarray(qs[:, 0, 0]))
  hist, _ = np.histogram(angles, bins=8, range=(-np.pi, np.pi))
  assert hist.min() > 0.8 * 4000 / 8 and hist.max() < 1.2 * 4000 / 8


@pytest.mark.parametrize('spec,z_dim', [(BALL, 3), (TWO_BODY, 6)])
@pytest.mark.parametrize('mode', ['sample', 'compose'])
def test_action_and_inverse(spec, z_dim, mode):
  groups = symmetry.parse(spec, z_dim)
  keys = jax.random.split(jax.random.PRNGKey(2), 16)
  g = jax.vmap(lambda k: symmetry.sample_transform(k, groups, z_dim, mode))(keys)
  z = jax.random.normal(jax.random.PRNGKey(3), (16, 5, z_dim))
  gz = jax.vmap(symmetry.act)(g, z)
  np.testing.assert_allclose(jax.vmap(symmetry.act_inverse)(g, gz), z, atol=1e-5)
  assert not np.allclose(gz, z)


def test_ball_spec_leaves_the_vertical_dim_alone():
  groups = symmetry.parse(BALL, 3)
  g = symmetry.sample_transform(jax.random.PRNGKey(4), groups, 3, 'compose')
  z = jnp.array([[0.3, -1.7, 2.0]])
  assert float(symmetry.act(g, z)[0, 1]) == pytest.approx(-1.7)


def test_two_body_slices_share_one_element():
  groups = symmetry.parse(TWO_BODY, 6)
  g = symmetry.sample_transform(jax.random.PRNGKey(5), groups, 6, 'compose')
  a, b = g
  np.testing.assert_allclose(a[:3, :3], a[3:, 3:], atol=1e-6)
  np.testing.assert_allclose(a[:3, 3:], 0, atol=1e-7)
  np.testing.assert_allclose(b[:3], b[3:], atol=1e-6)
  # Relative position of the bodies rotates but keeps its length.
  z = jax.random.normal(jax.random.PRNGKey(6), (6,))
  gz = symmetry.act(g, z)
  assert float(jnp.linalg.norm(gz[:3] - gz[3:])) == pytest.approx(float(jnp.linalg.norm(z[:3] - z[3:])), rel=1e-5)


def test_translation_by_hand():
  g = symmetry.sample_element(jax.random.PRNGKey(7), symmetry.Group('T', ((0, 2),)), 3)
  a, b = g
  np.testing.assert_array_equal(a, np.eye(3))
  assert float(b[1]) == 0.0
  np.testing.assert_allclose(symmetry.act(g, jnp.array([1.0, 2.0, 3.0])),
                             jnp.array([1.0 + b[0], 2.0, 3.0 + b[2]]))


def test_identity_probability():
  groups = symmetry.parse(BALL, 3)
  keys = jax.random.split(jax.random.PRNGKey(8), 2000)
  a, b = jax.vmap(lambda k: symmetry.sample_transform(k, groups, 3, 'sample', p_identity=0.3))(keys)
  is_id = np.all(np.isclose(a, np.eye(3)), axis=(1, 2)) & np.all(b == 0, axis=1)
  assert 0.26 < is_id.mean() < 0.34
  a1, _ = jax.vmap(lambda k: symmetry.sample_transform(k, groups, 3, 'sample', p_identity=1.0))(keys[:10])
  np.testing.assert_array_equal(a1, np.broadcast_to(np.eye(3), a1.shape))


@pytest.mark.parametrize('spec,msg', [('T:0,3', 'dims must lie in 0..2'), ('X:0', 'write T:'),
                                      ('T:0,1|2', 'same number'), ('R:0,0', 'twice'),
                                      ('T:a', 'integers')])
def test_parse_errors(spec, msg):
  with pytest.raises(ValueError, match=msg):
    symmetry.parse(spec, 3)


def _extrapolate(z_in, teacher, key):
  """A toy prior that is equivariant to every affine map with orthogonal A: z[t+1] = 2 z[t] - z[t-1]."""
  del teacher, key
  prev = jnp.concatenate([z_in[:, :1], z_in[:, :-1]], axis=1)
  return 2 * z_in - prev


def test_equivariant_prior_has_zero_symmetry_loss():
  # Latents moving at constant velocity: the toy prior predicts them exactly, in any frame.
  t = jnp.arange(8.0)[None, :, None]
  z = jax.random.normal(jax.random.PRNGKey(9), (4, 1, 3)) + t * jax.random.normal(jax.random.PRNGKey(10), (4, 1, 3))
  x = jnp.zeros((4, 8, 2, 2, 1))
  decode = lambda zz: jnp.zeros((zz.shape[0], 2, 2, 1))
  groups = symmetry.parse(BALL, 3)
  g = jax.vmap(lambda k: symmetry.sample_transform(k, groups, 3, 'compose'))(jax.random.split(jax.random.PRNGKey(11), 4))
  for gg in (None, g):
    z_loss, _, _ = losses.prediction_losses(_extrapolate, decode, z, x, gg, jax.random.PRNGKey(0), 1.0, 3)
    assert float(z_loss) < 1e-9
  # A prior that is not equivariant (it pulls z toward the origin) is penalised differently.
  shrink = lambda z_in, teacher, key: 0.5 * z_in
  l_id, _, _ = losses.prediction_losses(shrink, decode, z, x, None, jax.random.PRNGKey(0), 1.0, 3)
  l_g, _, _ = losses.prediction_losses(shrink, decode, z, x, g, jax.random.PRNGKey(0), 1.0, 3)
  assert abs(float(l_id) - float(l_g)) > 1e-3
