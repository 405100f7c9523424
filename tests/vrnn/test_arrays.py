"""The npz/npy sequence reader, its splits and checks, and the normalisation of any D."""
import ml_collections
import numpy as np
import pytest

from vrnn import arrays
from vrnn import data as D


def write(path, **arrays_):
  np.savez(path, **arrays_)
  arrays.read.cache_clear()
  return str(path)


def test_npy_of_n_t_is_one_feature_and_all_real(tmp_path):
  np.save(tmp_path / 's.npy', np.arange(12.0).reshape(3, 4))
  arrays.read.cache_clear()
  got = arrays.read(str(tmp_path / 's.npy'))
  assert got['x'].shape == (3, 4, 1) and got['x'].dtype == np.float32
  np.testing.assert_array_equal(got['mask'], 1.0)
  np.testing.assert_array_equal(got['x'][1, :, 0], [4, 5, 6, 7])


def test_lengths_and_mask_mark_a_prefix_and_padding_is_zeroed(tmp_path):
  x = np.full((2, 4, 2), 7.0)
  by_len = arrays.read(write(tmp_path / 'a.npz', x=x, lengths=np.array([4, 2])))
  np.testing.assert_array_equal(by_len['mask'], [[1, 1, 1, 1], [1, 1, 0, 0]])
  np.testing.assert_array_equal(by_len['x'][1, 2:], 0.0)
  by_mask = arrays.read(write(tmp_path / 'b.npz', x=x, mask=by_len['mask']))
  np.testing.assert_array_equal(by_mask['x'], by_len['x'])
  only = arrays.read(write(tmp_path / 'c.npz', seqs=x))   # the only array, whatever its name
  assert only['x'].shape == (2, 4, 2)


@pytest.mark.parametrize('contents,message', [
    (dict(x=np.zeros((2, 3, 1)), mask=np.array([[1, 0, 1], [1, 1, 1]])), 'prefix'),
    (dict(x=np.zeros((2, 3, 1)), lengths=np.array([0, 3])), "'lengths' must be"),
    (dict(x=np.zeros((2, 3, 1)), lengths=np.array([1, 3]), mask=np.ones((2, 3))), 'keep one'),
    (dict(a=np.zeros((2, 3)), b=np.zeros(2)), "name the sequences 'x'"),
    (dict(x=np.zeros(5)), 'need (N, T, D)'),
    (dict(x=np.array([[[np.nan]]])), 'NaN'),
])
def test_bad_files_say_what_is_wrong(tmp_path, contents, message):
  path = write(tmp_path / 'bad.npz', **contents)
  with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
    arrays.read(path)


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='no such file'):
    arrays.read(str(tmp_path / 'none.npz'))


def test_splits_hold_out_the_last_sequences_and_cut_at_max_len(tmp_path):
  x = np.arange(10.0)[:, None, None] * np.ones((10, 6, 1))
  path = write(tmp_path / 's.npz', x=x)
  train = arrays.split(path, 'train', num_train=3, num_eval=4, max_len=5)
  held = arrays.split(path, 'eval', num_train=3, num_eval=4, max_len=5)
  np.testing.assert_array_equal(train['x'][:, 0, 0], [0, 1, 2])
  np.testing.assert_array_equal(held['x'][:, 0, 0], [6, 7, 8, 9])
  assert train['x'].shape == (3, 5, 1) and held['mask'].shape == (4, 5)
  with pytest.raises(ValueError, match='between 1 and 9'):
    arrays.split(path, 'eval', 3, 10, 5)


def test_load_normalises_every_feature_by_the_train_split(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal([3.0, -1.0, 10.0], [2.0, 0.5, 4.0], size=(20, 8, 3))
  lengths = rng.integers(2, 9, size=20)
  path = write(tmp_path / 's.npz', x=x, lengths=lengths)
  config = ml_collections.ConfigDict(dict(source='npz', path=path, num_train=100, num_eval=5,
                                          max_len=8, normalise=True))
  train, held = D.load(config, 'train', 0), D.load(config, 'eval', 0)
  real = np.concatenate([x[i, :lengths[i]] for i in range(15)])
  np.testing.assert_allclose(train['mean'], real.mean(0), rtol=1e-5)
  np.testing.assert_allclose(held['std'], real.std(0), rtol=1e-5)
  want = (x[15, :lengths[15]] - real.mean(0)) / real.std(0)
  np.testing.assert_allclose(held['x'][0, :lengths[15]], want, rtol=1e-4, atol=1e-5)
  stored = (np.zeros(3), np.full(3, 2.0))   # a workdir's stats are used as given
  np.testing.assert_allclose(D.load(config, 'eval', 0, stored)['x'][0, :lengths[15]],
                             x[15, :lengths[15]] / 2.0, rtol=1e-5)
  with pytest.raises(ValueError, match='the data file changed'):
    D.load(config, 'eval', 0, (np.zeros(2), np.ones(2)))
  config.normalise = False
  np.testing.assert_allclose(D.load(config, 'eval', 0)['x'][0, :lengths[15]],
                             x[15, :lengths[15]], rtol=1e-6)


def test_log_jacobian_by_hand():
  mask = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
  np.testing.assert_allclose(D.log_jacobian(mask, [2.0, 3.0]), [-2 * np.log(6), -np.log(6)])
