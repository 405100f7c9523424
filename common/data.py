"""Batching of in-memory datasets as a pure function of the step, so a resumed run sees the same data."""
import numpy as np


def epoch_batch_indices(step, num_examples, batch_size, seed):
  """Indices of batch `step`: a fresh permutation each epoch, seeded by (seed, epoch)."""
  per_epoch = num_examples // batch_size
  if per_epoch == 0:
    raise ValueError(f'batch size {batch_size} is larger than the dataset ({num_examples})')
  epoch, i = divmod(int(step), per_epoch)
  perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
  return perm[i * batch_size:(i + 1) * batch_size]
