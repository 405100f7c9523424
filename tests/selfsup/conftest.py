"""A tiny selfsup config shared by the model and end-to-end tests (as the `small` fixture)."""
import pytest

from configs import selfsup as configs
from tests import helpers


def small_config(variant, **fields):
  """The smoke config cut to 4 steps of batch 8 on 40 + 20 + 40 images, evaluated once (by the
  test, not inside the loop); `fields` are dotted overrides."""
  c = configs.get_config('smoke')
  c.variant = variant
  c.task = 'classify' if variant == 'finetune' else variant
  c.update(dict(num_steps=4, log_every=2, eval_every=100, eval_at_end=False, progress_bar=False,
                batch_size=8))
  c.checkpoint.every = 2
  c.data.update(dict(num_labelled=40, num_val=20, num_unlabelled=40))
  c.eval.update(dict(batch_size=20, knn_k=3, probe_steps=5))
  return helpers.set_fields(c, fields)


@pytest.fixture(scope='session')
def small():
  return small_config
