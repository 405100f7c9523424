"""MNIST for any project, from a prepared TFDS 'mnist': read through `tfds.data_source` (random
access on array_record files; TensorFlow is not needed), never downloaded."""
import numpy as np

SIZE = 28
PREPARE = 'pip install -e ".[data]" && tfds build mnist --file_format=array_record'


def images(split, data_dir=None):
  """The split's images as uint8 (n, 28, 28); a clear FileNotFoundError, naming the command that
  prepares MNIST, when it is not prepared in data_dir (or the default TFDS data_dir)."""
  import tensorflow_datasets as tfds  # slow to import: only when asked for
  try:
    source = tfds.data_source('mnist', split=split, data_dir=data_dir or None, download=False)
  except (FileNotFoundError, NotImplementedError, AssertionError, KeyError,
          tfds.core.DatasetNotFoundError) as e:
    where = data_dir or 'the default TFDS data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)'
    raise FileNotFoundError(
        f'MNIST is not prepared as array_record in {where} ({type(e).__name__}); prepare it '
        f'once with: {PREPARE}' + (f' --data_dir={data_dir}' if data_dir else '')) from None
  return np.stack([np.asarray(source[i]['image']) for i in range(len(source))]).reshape(
      -1, SIZE, SIZE)
