"""vrnn's curves.png before the first evaluation, or without training records, says so."""
from common import plotting
from configs import vrnn as configs
from tests import helpers
from vrnn import evaluate


def test_curves_before_the_first_evaluation_say_so(tmp_path):
  c = configs.get_config('smoke')
  train = [{'step': s, 'split': 'train', 'elbo_per_step': -1.0 / s} for s in (10, 20)]
  fig = evaluate.curves_figure(*helpers.write_records(tmp_path, train), c)
  ax, = fig.axes
  assert [l.get_label() for l in ax.lines] == ['train']
  assert f'no evaluation yet (the first at step {c.eval_every})' in helpers.words(ax)
  plotting.plt.close(fig)


def test_curves_without_training_records_say_so(tmp_path):
  c = configs.get_config('smoke')
  ev = [{'step': 15, 'split': 'eval', 'elbo_per_step': -0.5}]
  fig = evaluate.curves_figure(*helpers.write_records(tmp_path, ev), c)
  ax, = fig.axes
  assert [l.get_label() for l in ax.lines] == ['eval']
  assert 'no training records yet' in helpers.words(ax)
  plotting.plt.close(fig)
