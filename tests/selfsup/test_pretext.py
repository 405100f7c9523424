"""Pretext generators and augmentations: each example's targets against its pixels."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import selfsup as configs
from selfsup import pretext

KEYS = jax.random.split(jax.random.PRNGKey(0), 64)


def _images(n, size=16, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=(n, size, size, 3)), jnp.float32)


def test_stick_breaking_two_sources_is_w_and_one_minus_w():
  key = jax.random.PRNGKey(3)
  w = pretext.stick_breaking(key, 2, 5.0, 8.0)
  np.testing.assert_allclose(w, [jax.random.beta(key, 5.0, 8.0, (1,))[0],
                                 1 - jax.random.beta(key, 5.0, 8.0, (1,))[0]], rtol=1e-6)
  many = jax.vmap(lambda k: pretext.stick_breaking(k, 2, 5.0, 8.0))(
      jax.random.split(key, 20000))
  assert abs(float(many[:, 0].mean()) - 5 / 13) < 0.005   # the Beta(5, 8) mean


@pytest.mark.parametrize('k', [1, 3, 4])
def test_stick_breaking_weights_are_positive_and_sum_to_one(k):
  w = jax.vmap(lambda key: pretext.stick_breaking(key, k, 2.0, 3.0))(KEYS)
  assert w.shape == (64, k) and np.all(np.asarray(w) > 0)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize('n,k', [(3, 2), (4, 3), (2, 1)])
def test_mixup_weights_sum_to_one_and_make_the_mixed_pixels(n, k):
  cands = _images(n)
  outs = jax.vmap(lambda key: pretext.mixup(key, cands, k, (5.0, 8.0)))(KEYS[:8])
  for i in range(8):
    out = jax.tree.map(lambda a: a[i], outs)
    w = np.asarray(out['weights'], np.float64)
    assert np.isclose(w.sum(), 1.0, atol=1e-6)
    assert (w > 0).sum() == k
    np.testing.assert_array_equal(out['which'], (w > 0).astype(np.float32))
    by_hand = sum(w[i] * np.asarray(cands[i], np.float64) for i in range(n))
    np.testing.assert_allclose(out['query'], by_hand, atol=1e-6)


def test_mixup_picks_every_candidate_equally_often():
  which = jax.vmap(lambda key: pretext.mixup(key, _images(3), 2, (5.0, 8.0))['which'])(
      jax.random.split(jax.random.PRNGKey(1), 3000))
  np.testing.assert_allclose(which.mean(0), [2 / 3] * 3, atol=0.03)


def test_scale_multiplies_one_candidate_by_its_weight():
  cands = _images(3)
  outs = jax.vmap(lambda key: pretext.scale(key, cands, (0.3, 1.0)))(KEYS[:8])
  for j in range(8):
    out = jax.tree.map(lambda a: a[j], outs)
    i = int(np.argmax(out['which']))
    w = float(out['weights'][i])
    assert 0.3 <= w <= 1.0 and out['which'].sum() == 1 and np.count_nonzero(out['weights']) == 1
    np.testing.assert_allclose(out['query'], w * cands[i], rtol=1e-6)


def test_quadrant_crop_shows_its_quadrant():
  # Each quadrant one constant colour: the crop's inside is that colour, resized to full size.
  size = 16
  colours = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], np.float32)
  img = np.zeros((size, size, 3), np.float32)
  h = size // 2
  img[:h, :h], img[:h, h:], img[h:, :h], img[h:, h:] = colours
  seen = set()
  outs = jax.vmap(lambda key: pretext.quadrant(key, jnp.asarray(img)))(KEYS[:32])
  for i in range(32):
    out = jax.tree.map(lambda a: a[i], outs)
    q = int(out['label'])
    seen.add(q)
    assert out['query'].shape == (size, size, 3)
    # Away from the crop's inner edges (where bilinear sampling reaches the next quadrant).
    inner = np.asarray(out['query'])[2:-2, 2:-2]
    np.testing.assert_allclose(inner, np.broadcast_to(colours[q], inner.shape), atol=1e-5)
  assert seen == {0, 1, 2, 3}


def test_crop_and_resize_of_the_whole_image_is_the_image():
  img = _images(1)[0]
  np.testing.assert_allclose(pretext.crop_and_resize(img, 0.0, 0.0, 16.0, 16.0, 16), img,
                             atol=1e-5)


def _pastes(query, image, source, p):
  """Whether `query` is `image` with some p x p patch of `source` pasted somewhere (searched)."""
  n = image.shape[0] - p + 1
  patches = np.stack([source[i:i + p, j:j + p] for i in range(n) for j in range(n)])
  for i in range(n):
    for j in range(n):
      outside = np.ones(image.shape[:2], bool)
      outside[i:i + p, j:j + p] = False
      if (np.array_equal(query[outside], image[outside])
          and np.any(np.all(patches == query[i:i + p, j:j + p], axis=(1, 2, 3)))):
        return True
  return False


def test_patchwork_pastes_a_patch_of_the_image_it_labels():
  size, p = 12, 4
  img, other = np.asarray(_images(2, size, seed=4))
  labels = []
  outs = jax.vmap(lambda key: pretext.patchwork(key, jnp.asarray(img), jnp.asarray(other), p,
                                                0.5))(jax.random.split(jax.random.PRNGKey(7), 30))
  for i in range(30):
    q, label = np.asarray(outs['query'][i]), int(outs['label'][i])
    labels.append(label)
    assert _pastes(q, img, img if label else other, p)
    if not label:   # random pixels: a foreign patch is never also one of the image's own
      assert not _pastes(q, img, img, p)
  assert 7 < sum(labels) < 23   # positive_fraction 0.5 of 30


def test_augment_is_the_identity_when_disabled_and_stays_in_range():
  c = configs.get_config('simclr')
  img = _images(1)[0]
  c.augment.enabled = False
  np.testing.assert_array_equal(pretext.augment(KEYS[0], img, c), img)
  c.augment.enabled = True
  views = jax.vmap(lambda k: pretext.augment(k, img, c))(KEYS[:16])
  assert views.shape == (16, 16, 16, 3)
  assert float(views.min()) >= 0 and float(views.max()) <= 1
  assert not np.allclose(views[0], views[1])


def test_flip_only_augmentation_mirrors_half_the_images():
  c = configs.get_config('mixup')
  c.augment.update(dict(crop_scale=(1.0, 1.0), color_jitter=0.0, grayscale=0.0))
  img = _images(1)[0]
  views = np.asarray(jax.vmap(lambda k: pretext.augment(k, img, c))(KEYS))
  same = [np.array_equal(v, img) for v in views]
  mirrored = [np.array_equal(v, img[:, ::-1]) for v in views]
  assert all(a or b for a, b in zip(same, mirrored)) and 16 < sum(mirrored) < 48


def test_color_jitter_of_a_grey_image_changes_only_brightness_and_contrast():
  grey = jnp.full((8, 8, 3), 0.5)
  out = pretext.color_jitter(jax.random.PRNGKey(0), grey, 0.5)
  np.testing.assert_allclose(out, out[0, 0, 0], atol=1e-6)   # still one flat grey
  assert 0.25 <= float(out[0, 0, 0]) <= 0.75


@pytest.mark.parametrize('task,keys', [
    ('mixup', {'query', 'candidates', 'weights', 'which'}),
    ('scale', {'query', 'candidates', 'weights', 'which'}),
    ('quadrant', {'query', 'label'}),
    ('patchwork', {'query', 'label'}),
    ('simclr', {'view1', 'view2'}),
    ('classify', {'image'}),
])
def test_batches_have_the_task_fields_and_are_deterministic(task, keys):
  c = configs.get_config('smoke')
  m = pretext.candidates_per_example(task, c)
  images = jnp.stack([_images(m, seed=s) for s in range(4)])   # (4, m, 16, 16, 3)
  make = jax.jit(pretext.batch_fn(task, c))
  a, b = make(KEYS[0], images), make(KEYS[0], images)
  assert set(a) == keys
  assert all(v.shape[0] == 4 for v in a.values())
  jax.tree.map(np.testing.assert_array_equal, a, b)
  if task in ('mixup', 'scale'):
    assert a['candidates'].shape == (4, 3, 16, 16, 3)


def test_hue_rotation_by_a_third_of_a_turn_permutes_the_primaries():
  rgb = jnp.eye(3)[None]   # red, green, blue pixels
  np.testing.assert_allclose(pretext.rotate_hue(rgb, 2 * np.pi / 3)[0],
                             [[0, 1, 0], [0, 0, 1], [1, 0, 0]], atol=1e-6)
  img = _images(1)[0] * 0.5 + 0.25
  np.testing.assert_allclose(pretext.rotate_hue(img, 0.0), img, atol=1e-6)
  # The grey level survives any rotation (away from the clipping at 0 and 1).
  np.testing.assert_allclose(pretext.rotate_hue(img, 1.0).mean(-1), img.mean(-1), atol=1e-5)


def test_candidate_views_show_other_augmentations_of_the_mixed_images():
  c = configs.get_config('smoke')
  c.augment.update(dict(crop_scale=(1.0, 1.0), color_jitter=0.5))
  images = _images(3)[None]
  same = pretext.batch_fn('mixup', c)(KEYS[0], images)
  c.pretext.candidate_views = True
  views = pretext.batch_fn('mixup', c)(KEYS[0], images)
  w = np.asarray(same['weights'][0])
  np.testing.assert_allclose(same['query'][0], np.tensordot(w, same['candidates'][0], 1),
                             atol=1e-6)
  np.testing.assert_allclose(views['query'], same['query'], atol=1e-6)   # the same mix ...
  assert not np.allclose(views['candidates'], same['candidates'])       # ... other views


def test_every_pretext_task_has_its_config_variant():
  assert configs.PRETEXT == pretext.TASKS
