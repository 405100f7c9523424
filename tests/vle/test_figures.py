"""vle's training.png before the first evaluation, and the report's note on 'never reached'."""
from common import metrics as metrics_lib
from common import plotting
from configs import vle as configs
from tests import helpers
from vle import evaluate
from vle import figures


def test_training_curves_before_the_first_evaluation_say_so(tmp_path):
  c = configs.get_config('smoke')
  train = [{'step': s, 'split': 'train', 'final_mse': 0.1 / s} for s in (5, 10)]
  fig = figures.training_figure(*helpers.write_records(tmp_path, train), c)
  ax, = fig.axes
  assert [l.get_label() for l in ax.lines] == ['train: MSE after last token']
  assert f'no evaluation yet (the first at step {c.eval_every})' in helpers.words(ax)
  plotting.plt.close(fig)


def test_report_says_that_tokens_plus_one_means_never_reached(tmp_path, capsys):
  c = configs.get_config('smoke')
  never = c.eval.tokens + 1
  m = {'mse_1': 0.01, 'median_tokens_to_threshold': 2.0,
       'baseline_median_tokens_to_threshold': float(never)}
  metrics_lib.report(str(tmp_path), str(tmp_path), 'vle evaluation', m, {},
                     notes=evaluate.table_notes(m, c))
  out = capsys.readouterr().out
  assert f'| baseline_median_tokens_to_threshold | {never} |' in out
  assert (f'median_tokens_to_threshold = {never} (eval.tokens + 1) means never reached: half the '
          f'images or more keep MSE >= {c.eval.mse_threshold} after {c.eval.tokens} tokens') in out
  assert evaluate.table_notes({'mse_1': 0.01}, c) == []
