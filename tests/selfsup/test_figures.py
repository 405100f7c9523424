"""selfsup's training.png before the first evaluation, or without training records, says so."""
from common import plotting
from selfsup import figures
from tests import helpers

TRAIN = [{'step': s, 'split': 'train', 'loss': 1.0 / s, 'accuracy': 0.1 * s} for s in (2, 4)]
EVAL = [{'step': 4, 'split': 'eval', 'knn_accuracy': 0.3, 'probe_accuracy': 0.4}]


def test_training_figure_before_the_first_evaluation_says_so(tmp_path, small):
  c = small('mixup')
  fig = figures.training_figure(*helpers.write_records(tmp_path, TRAIN), c)
  loss, accuracy = fig.axes
  assert [l.get_label() for l in accuracy.lines] == ['train: task accuracy']
  assert 'no evaluation in this run' in helpers.words(accuracy)   # eval_every > num_steps
  assert 'no ' not in helpers.words(loss)
  plotting.plt.close(fig)


def test_training_figure_without_training_records_says_so(tmp_path, small):
  c = small('mixup')
  fig = figures.training_figure(*helpers.write_records(tmp_path, EVAL), c)
  loss, accuracy = fig.axes
  assert not loss.lines and len(loss.get_xticks()) == 0
  assert plotting.not_yet(c, 'train') in helpers.words(loss)
  assert len(accuracy.lines) == 2 and 'no ' not in helpers.words(accuracy)
  plotting.plt.close(fig)
