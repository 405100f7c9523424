"""Augmentations and pretext-task generators, each written for one example and vmapped over keys.

Images are float32 (H, W, C) in [0, 1]. Every function is pure: the same key gives the same
example. `batch_fn(task, ...)` returns the batched generator a train step feeds on, and
`make_batch_fn(config, pool)` one that draws its images from a pool.
"""
import jax
import jax.numpy as jnp

from selfsup import data as D

TASKS = ('mixup', 'scale', 'quadrant', 'patchwork', 'simclr')   # the pretext tasks


# ---------------------------------------------------------------------------
# Augmentations.

def crop_and_resize(image, top, left, height, width, out_size):
  """The (height, width) window at (top, left) (traced floats, pixels), bilinearly resized to
  (out_size, out_size)."""
  scale = jnp.stack([out_size / height, out_size / width])
  translation = -jnp.stack([top, left]) * scale
  return jax.image.scale_and_translate(image, (out_size, out_size, image.shape[-1]), (0, 1),
                                       scale, translation, method='linear', antialias=False)


def random_resized_crop(key, image, scale=(0.6, 1.0), ratio=(3 / 4, 4 / 3)):
  """Inception-style crop: a window of area fraction U(scale) and aspect ratio log-U(ratio),
  placed uniformly, resized back to the image size."""
  size = image.shape[0]
  k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
  area = jax.random.uniform(k_area, (), minval=scale[0], maxval=scale[1]) * size * size
  r = jnp.exp(jax.random.uniform(k_ratio, (), minval=jnp.log(ratio[0]), maxval=jnp.log(ratio[1])))
  h = jnp.clip(jnp.sqrt(area / r), 1.0, size)
  w = jnp.clip(jnp.sqrt(area * r), 1.0, size)
  top = jax.random.uniform(k_top, ()) * (size - h)
  left = jax.random.uniform(k_left, ()) * (size - w)
  return crop_and_resize(image, top, left, h, w, size)


def color_jitter(key, image, strength):
  """Brightness, contrast and saturation, each scaled by a factor in [1 - s, 1 + s]."""
  kb, kc, ks = jax.random.split(key, 3)
  factor = lambda k: 1.0 + jax.random.uniform(k, (), minval=-strength, maxval=strength)
  image = image * factor(kb)
  mean = image.mean()
  image = (image - mean) * factor(kc) + mean
  grey = image.mean(-1, keepdims=True)
  image = (image - grey) * factor(ks) + grey
  return jnp.clip(image, 0.0, 1.0)


def rotate_hue(image, angle):
  """Rotates every colour about the grey axis by `angle` radians (a hue shift that keeps each
  pixel's grey level mean(r, g, b))."""
  axis = jnp.ones(3) / jnp.sqrt(3.0)
  cross = jnp.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]],
                     [-axis[1], axis[0], 0.0]])
  rot = (jnp.cos(angle) * jnp.eye(3) + jnp.sin(angle) * cross
         + (1 - jnp.cos(angle)) * jnp.outer(axis, axis))   # Rodrigues
  return jnp.clip(image @ rot.T, 0.0, 1.0)


def augment(key, image, config):
  """The configured augmentation of one image (config.augment); identity when disabled."""
  a = config.augment
  if not a.enabled:
    return image
  k_crop, k_flip, k_jit, k_grey, k_hue = jax.random.split(key, 5)
  if tuple(a.crop_scale) != (1.0, 1.0):
    image = random_resized_crop(k_crop, image, tuple(a.crop_scale))
  if a.flip:
    image = jnp.where(jax.random.bernoulli(k_flip), image[:, ::-1], image)
  if a.color_jitter > 0:
    image = color_jitter(k_jit, image, a.color_jitter)
  if a.hue > 0:
    turn = jax.random.uniform(k_hue, (), minval=-a.hue, maxval=a.hue)
    image = rotate_hue(image, 2 * jnp.pi * turn)
  if a.grayscale > 0:
    grey = jnp.broadcast_to(image.mean(-1, keepdims=True), image.shape)
    image = jnp.where(jax.random.bernoulli(k_grey, a.grayscale), grey, image)
  return image


# ---------------------------------------------------------------------------
# Pretext tasks: one example each.

def stick_breaking(key, k, a, b):
  """k weights summing to one: w_1 ~ Beta(a, b), w_i = Beta(a, b) of what is left, the last
  takes the rest; k = 2 gives (w, 1 - w) as in mixup."""
  draws = jax.random.beta(key, a, b, (k - 1,))
  left = jnp.concatenate([jnp.ones(1), jnp.cumprod(1.0 - draws)])   # (k,) stick left before i
  return left * jnp.concatenate([draws, jnp.ones(1)])


def mixup(key, candidates, num_mixed, beta):
  """Mixes `num_mixed` of the n candidates (n, H, W, C) with stick-breaking Beta weights.

  Returns {'query': the mix, 'weights': (n,) each candidate's weight (0 if not mixed; sums to
  one), 'which': (n,) 1.0 for the mixed candidates}.
  """
  n = candidates.shape[0]
  k_pick, k_w = jax.random.split(key)
  chosen = jax.random.permutation(k_pick, n)[:num_mixed]
  weights = jnp.zeros(n).at[chosen].set(stick_breaking(k_w, num_mixed, *beta))
  query = jnp.tensordot(weights, candidates, axes=1)
  return {'query': query, 'weights': weights, 'which': (weights > 0).astype(jnp.float32)}


def scale(key, candidates, weight_range):
  """One of the n candidates multiplied by a weight ~ U(weight_range).

  Returns {'query', 'weights': (n,) the weight at the chosen candidate, 0 elsewhere, 'which':
  its one-hot}.
  """
  n = candidates.shape[0]
  k_pick, k_w = jax.random.split(key)
  i = jax.random.randint(k_pick, (), 0, n)
  w = jax.random.uniform(k_w, (), minval=weight_range[0], maxval=weight_range[1])
  which = jax.nn.one_hot(i, n)
  return {'query': w * candidates[i], 'weights': w * which, 'which': which}


def quadrant(key, image):
  """One quadrant of the image, resized to the full size; label 0..3 = top-left, top-right,
  bottom-left, bottom-right."""
  size = image.shape[0]
  q = jax.random.randint(key, (), 0, 4)
  half = size / 2
  top, left = (q // 2) * half, (q % 2) * half
  return {'query': crop_and_resize(image, top, left, half, half, size), 'label': q}


def patchwork(key, image, other, patch_size, positive_fraction):
  """Pastes a patch_size square into `image` at a random place, cut from `image` itself
  (label 1, at an independent random place) or from `other` (label 0)."""
  size = image.shape[0]
  k_pos, k_src, k_dst = jax.random.split(key, 3)
  positive = jax.random.bernoulli(k_pos, positive_fraction)
  source = jnp.where(positive, image, other)
  src = jax.random.randint(k_src, (2,), 0, size - patch_size + 1)
  dst = jax.random.randint(k_dst, (2,), 0, size - patch_size + 1)
  patch = jax.lax.dynamic_slice(source, (src[0], src[1], 0),
                                (patch_size, patch_size, image.shape[-1]))
  query = jax.lax.dynamic_update_slice(image, patch, (dst[0], dst[1], 0))
  return {'query': query, 'label': positive.astype(jnp.int32)}


# ---------------------------------------------------------------------------
# Batches.

def candidates_per_example(task, config):
  """Images drawn from the pool per example."""
  if task in ('mixup', 'scale'):
    return config.pretext.num_candidates
  return 2 if task in ('patchwork', 'simclr') else 1


def make_example(task, config, train=True):
  """(key, images (m, H, W, C) float in [0, 1]) -> one example of `task` (a dict of arrays).

  With train=False nothing is augmented (evaluation batches, overfitting one batch).
  """
  p = config.pretext
  aug = (lambda k, x: augment(k, x, config)) if train else (lambda k, x: x)

  def example(key, images):
    k_aug, k_task = jax.random.split(key)
    if task == 'simclr':
      k1, k2 = jax.random.split(k_aug)
      return {'view1': aug(k1, images[0]), 'view2': aug(k2, images[0])}
    k_aug, k_view = jax.random.split(k_aug)
    views = images
    images = jax.vmap(aug)(jax.random.split(k_aug, images.shape[0]), images)
    # The candidates shown: the mixed images themselves, or other augmented views of them.
    views = (jax.vmap(aug)(jax.random.split(k_view, views.shape[0]), views)
             if p.candidate_views else images)
    if task == 'mixup':
      out = mixup(k_task, images, p.num_mixed, tuple(p.beta))
    elif task == 'scale':
      out = scale(k_task, images, tuple(p.scale_range))
    elif task == 'quadrant':
      out = quadrant(k_task, images[0])
    elif task == 'patchwork':
      out = patchwork(k_task, images[0], images[1], p.patch_size, p.positive_fraction)
    elif task == 'classify':
      return {'image': images[0]}
    else:
      raise ValueError(f'unknown task {task!r}')
    if task in ('mixup', 'scale'):
      out['candidates'] = views
    return out

  return example


def batch_fn(task, config, train=True):
  """(key, images (B, m, H, W, C) float) -> the batch of `task`: the example vmapped over keys."""
  example = make_example(task, config, train)
  return lambda key, images: jax.vmap(example)(jax.random.split(key, images.shape[0]), images)


def make_batch_fn(config, pool, labels=None, train=True):
  """(key) -> a batch of config.task drawn from a device pool of uint8 images (and labels)."""
  pool = jnp.asarray(pool)
  labels = None if labels is None else jnp.asarray(labels)
  make = batch_fn(config.task, config, train)
  m = candidates_per_example(config.task, config)
  b = config.batch_size

  def batch(key):
    k_idx, k_ex = jax.random.split(key)
    idx = jax.random.randint(k_idx, (b, m), 0, pool.shape[0])
    out = make(k_ex, D.to_float(pool[idx]))
    if labels is not None:
      out['label'] = labels[idx[:, 0]]
    return out

  return batch
