"""Real images for any project: a prepared TFDS dataset or a local folder of image files, each
image resized (shortest side) and centre-cropped to a square uint8 array.

Numpy and PIL on the host, since the images arrive one by one from files; the projects put the
stacked result on the device once.
"""
import os

import numpy as np

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp')


def resize_and_crop(image, size):
  """uint8 (H, W, C) with C in 1, 3, 4 -> (size, size, 3): shortest side to `size`, centre crop."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, -1)
  pil = Image.fromarray(image[..., :3].astype(np.uint8))
  w, h = pil.size
  scale = size / min(w, h)
  nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
  pil = pil.resize((nw, nh), Image.BILINEAR)
  left, top = (nw - size) // 2, (nh - size) // 2
  return np.asarray(pil.crop((left, top, left + size, top + size)), np.uint8)


def _num_classes(source, label_key):
  """The label feature's class count as TFDS records it, or None (e.g. a test's plain list)."""
  try:
    n = source.dataset_info.features[label_key].num_classes
  except (AttributeError, KeyError, TypeError):
    return None
  return int(n) if isinstance(n, (int, np.integer)) and n > 0 else None


def load_tfds(name, split, size, num=None, data_dir=None, key='image', label_key=None):
  """Images (n, size, size, 3) uint8 from a prepared TFDS dataset, through `tfds.data_source`
  (random access, no TensorFlow, never downloads).

  With `label_key` (e.g. 'label'), returns (images, labels int32 (n,), num_classes): the class
  count is the dataset's own when it records one, else the largest label seen + 1.
  """
  import tensorflow_datasets as tfds  # slow to import: only when asked for
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
  except (FileNotFoundError, NotImplementedError, AssertionError, KeyError,
          tfds.core.DatasetNotFoundError) as e:
    where = data_dir or 'the default TFDS data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)'
    raise FileNotFoundError(
        f'TFDS dataset {name!r} (split {split!r}) is not prepared as array_record in {where} '
        f'({type(e).__name__}); prepare it once with: tfds build {name} '
        '--file_format=array_record' + (f' --data_dir={data_dir}' if data_dir else '')) from None
  n = len(source) if not num else min(num, len(source))
  if n == 0:
    raise FileNotFoundError(f'TFDS dataset {name!r} split {split!r} is empty')
  first = source[0]
  for k in (key,) if label_key is None else (key, label_key):
    if k not in first:
      raise ValueError(f'TFDS dataset {name!r} has no {k!r} feature; its features are '
                       f'{", ".join(sorted(first))}')
  examples = [source[i] for i in range(n)]
  images = np.stack([resize_and_crop(ex[key], size) for ex in examples])
  if label_key is None:
    return images
  labels = np.asarray([int(ex[label_key]) for ex in examples], np.int32)
  num_classes = _num_classes(source, label_key) or int(labels.max()) + 1
  return images, labels, num_classes


def folder_files(path, split=None):
  """Image files under `path` (recursively, sorted): all of them for split None; 'test' is every
  10th, 'train' the rest, so a folder without its own split still gets a fixed held-out part."""
  if not os.path.isdir(path):
    raise FileNotFoundError(f'image folder {path!r} does not exist')
  files = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names
                 if f.lower().endswith(IMAGE_EXTENSIONS))
  if len(files) < 2:
    raise FileNotFoundError(f'image folder {path!r} holds {len(files)} images '
                            f'({", ".join(IMAGE_EXTENSIONS)}); it needs at least 2')
  if split is None:
    return files
  return [f for i, f in enumerate(files) if (i % 10 == 0) == (split == 'test')]


def load_folder(path, split, size, num=None):
  """Images (n, size, size, 3) uint8 from a folder of image files, resized and centre-cropped;
  split as in `folder_files`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  files = folder_files(path, split)[:num or None]
  return np.stack([resize_and_crop(np.asarray(Image.open(f).convert('RGB')), size)
                   for f in files])
