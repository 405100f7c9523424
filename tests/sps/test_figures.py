"""SPS figures: curves.png before the first evaluation, and the z trajectories' legend."""
import numpy as np

from common import plotting
from configs import sps as sps_configs
from sps import figures
from tests import helpers

TRAIN = [{'step': s, 'split': 'train', 'loss': 1.0 / s, 'self_recon': 0.5 / s} for s in (10, 20)]


def test_curves_before_the_first_evaluation_say_so(tmp_path):
  c = sps_configs.get_config('smoke')
  train_log, eval_log = helpers.write_records(tmp_path, TRAIN)
  assert train_log and not eval_log
  fig = figures.curves_figure(train_log, eval_log, c)
  losses, ev = fig.axes
  assert len(losses.lines) == 2
  assert not ev.lines and len(ev.get_xticks()) == len(ev.get_yticks()) == 0
  assert f'no evaluation yet (the first at step {c.eval_every})' in helpers.words(ev)
  plotting.plt.close(fig)
  out = tmp_path / 'eval' / 'step_20'
  assert figures.curves(str(out), c) == {'curves': str(out / 'curves.png')}


def test_curves_without_training_records_say_so(tmp_path):
  c = sps_configs.get_config('smoke')
  eval_only = [{'step': 15, 'split': 'eval', 'linear_projection_mse': 0.1}]
  fig = figures.curves_figure(*helpers.write_records(tmp_path, eval_only), c)
  losses, ev = fig.axes
  assert not losses.lines and 'no training records yet' in helpers.words(losses)
  assert len(ev.lines) == 2   # the MSE and the 0.03 line
  plotting.plt.close(fig)


def test_z_trajectories_legend_says_what_colours_and_line_styles_mean():
  y = np.random.default_rng(0).normal(size=(5, 8, 3))
  fig = figures.trajectory_figure(y, y + 0.1, np.array([0.1, 0.2, 0.3]))
  legend = fig.axes[-1].get_legend()
  labels = [t.get_text() for t in legend.get_texts()]
  assert labels == ['true position', 'linear read-out of z', 'test sequence 0', 'test sequence 1',
                    'test sequence 2']
  styles = [h.get_linestyle() for h in legend.legend_handles[:2]]
  assert styles == ['-', '--']
  # The legend's colours are the lines' colours: sequence j solid and dashed in colour j.
  colours = [h.get_color() for h in legend.legend_handles[2:]]
  assert [l.get_color() for l in fig.axes[0].lines] == [c for c in colours for _ in range(2)]
  plotting.plt.close(fig)
