"""Real-image loaders on files and TFDS sources the tests make: resizing, the folder splits, and
images with their labels."""
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from common import images as I


def test_resize_and_crop_shortest_side_then_centre():
  img = np.zeros((20, 40, 3), np.uint8)
  img[:, 10:30] = 255             # the centre 20 columns are white
  out = I.resize_and_crop(img, 10)
  assert out.shape == (10, 10, 3) and out.dtype == np.uint8
  assert out[:, 1:-1].min() > 200   # after halving, the centre crop is the white band
  grey = I.resize_and_crop(np.full((8, 8), 7, np.uint8), 4)
  assert grey.shape == (4, 4, 3) and np.all(grey == 7)
  rgba = I.resize_and_crop(np.full((6, 6, 4), 9, np.uint8), 6)
  assert rgba.shape == (6, 6, 3)


def _folder_of_twelve(tmp_path):
  for i in range(12):
    sub = tmp_path / ('a' if i < 6 else 'b')
    sub.mkdir(exist_ok=True)
    Image.fromarray(np.full((12, 16, 3), 10 * i, np.uint8)).save(sub / f'{i:02d}.png')
  (tmp_path / 'notes.txt').write_text('not an image')


def test_folder_loader_splits_every_tenth_file(tmp_path):
  _folder_of_twelve(tmp_path)
  train = I.load_folder(str(tmp_path), 'train', 8)
  test = I.load_folder(str(tmp_path), 'test', 8)
  assert train.shape == (10, 8, 8, 3) and test.shape == (2, 8, 8, 3)
  assert sorted(test[:, 0, 0, 0]) == [0, 100]   # files 0 and 10 of the sorted list
  assert I.load_folder(str(tmp_path), 'train', 8, num=3).shape == (3, 8, 8, 3)
  with pytest.raises(FileNotFoundError, match='does not exist'):
    I.load_folder(str(tmp_path / 'missing'), 'train', 8)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match='holds 0 images'):
    I.folder_files(str(tmp_path / 'empty'), 'train')


def test_folder_without_split_is_every_file_in_order(tmp_path):
  _folder_of_twelve(tmp_path)
  files = I.folder_files(str(tmp_path))
  assert [f[len(str(tmp_path)) + 1:] for f in files] == (
      [f'a/{i:02d}.png' for i in range(6)] + [f'b/{i:02d}.png' for i in range(6, 12)])
  assert sorted(files) == sorted(I.folder_files(str(tmp_path), 'train') +
                                 I.folder_files(str(tmp_path), 'test'))
  x = I.load_folder(str(tmp_path), None, 8)
  assert x.shape == (12, 8, 8, 3)
  np.testing.assert_array_equal(x[:, 3, 3, 0], 10 * np.arange(12))
  assert I.load_folder(str(tmp_path), None, 8, num=5).shape == (5, 8, 8, 3)


def _images_of_sizes(requested, labels=(0, 1)):
  def as_data_source(self, split, *args, **kwargs):
    requested.append((self.name, split))
    big = np.zeros((30, 20, 3), np.uint8)
    big[:, :, 0] = 200
    return [{'image': big, 'label': labels[0]},
            {'image': np.full((10, 10, 1), 50, np.uint8), 'label': labels[1]}]
  return as_data_source


def test_tfds_loader_resizes_any_image_dataset():
  requested = []
  with tfds.testing.mock_data(as_data_source_fn=_images_of_sizes(requested)):
    x = I.load_tfds('cifar10', 'test', 16)
  assert requested == [('cifar10', 'test')]
  assert x.shape == (2, 16, 16, 3) and x.dtype == np.uint8
  assert np.all(x[0, ..., 0] == 200) and np.all(x[1] == 50)
  with tfds.testing.mock_data(num_examples=5):
    x = I.load_tfds('cifar10', 'train', 8, num=3)
  assert x.shape == (3, 8, 8, 3)


def test_tfds_loader_with_labels():
  # A plain list records no class count: it is the largest label + 1.
  with tfds.testing.mock_data(as_data_source_fn=_images_of_sizes([], labels=(6, 2))):
    x, y, n = I.load_tfds('cifar10', 'test', 16, label_key='label')
  assert x.shape == (2, 16, 16, 3) and np.all(x[1] == 50)
  assert y.dtype == np.int32 and list(y) == [6, 2] and n == 7
  # Through the builder's features the count is the dataset's own, whatever labels were drawn.
  with tfds.testing.mock_data(num_examples=6):
    x, y, n = I.load_tfds('cifar10', 'train', 8, num=4, label_key='label')
  assert x.shape == (4, 8, 8, 3) and y.shape == (4,) and y.dtype == np.int32 and n == 10
  assert 0 <= y.min() and y.max() < 10
  with tfds.testing.mock_data(as_data_source_fn=_images_of_sizes([])):
    with pytest.raises(ValueError, match="no 'fine_label' feature.*image, label"):
      I.load_tfds('cifar10', 'test', 16, label_key='fine_label')


def test_tfds_loader_explains_missing_data(tmp_path):
  with pytest.raises(FileNotFoundError, match='tfds build cifar10'):
    I.load_tfds('cifar10', 'train', 8, data_dir=str(tmp_path))
