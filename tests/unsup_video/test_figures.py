"""unsup_video's curves.png before the first evaluation says so."""
from common import plotting
from configs import unsup_video as configs
from tests import helpers
from unsup_video import evaluate


def test_curves_before_the_first_evaluation_say_so(tmp_path):
  c = configs.get_config('smoke')
  train = [{'step': s, 'split': 'train', 'future_cross_entropy': 400.0 - s} for s in (5, 10)]
  fig = evaluate.curves_figure(*helpers.write_records(tmp_path, train), 'future', c)
  ax, = fig.axes
  assert [l.get_label() for l in ax.lines] == ['train (teacher forced)',
                                               'paper, composite conditional (341.2)']
  assert plotting.not_yet(c, 'eval') in helpers.words(ax)
  plotting.plt.close(fig)
