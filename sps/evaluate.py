"""Evaluate an SPS checkpoint: python -m sps.evaluate --workdir=DIR [--step=N].

Writes DIR/eval/step_<N>/metrics.json and PNGs (decoder traversal, z trajectories against
the true positions, a true-vs-predicted rollout, training curves; for music z against pitch
and the traversal as spectra; for many seeds a box plot; drawn by figures.py) and prints a
short table. Metrics (evaluation.py) are medians over seeds, with each seed's value and the
success rate; pictures show the best seed.

The project's `PROJECT` is declared here, the one module that sees both its training
(`train`) and its evaluation; `main` imports it from here.
"""
import functools
import os

import jax
import numpy as np

from common import cli
from common import project
from sps import evaluation
from sps import figures as sps_figures
from sps import train


def scorer(config, workdir):
  """(init_state, score) of a saved config, for Project.evaluate."""
  model, _, init_state = train.make_init(config)   # init_from only matters for training

  def score(state, step):
    evaluator = train.make_evaluator(config, model)
    per_seed = jax.device_get(evaluator.seed_metrics(state.params))
    metrics = evaluation.summarize(per_seed, step, config)
    lp = per_seed['linear_projection_mse']
    best = int(np.argmin(lp))

    def figures(out):
      params = train.seed_params(state.params, best)
      mu = evaluator.encode(state.params)[best]
      paths = sps_figures.write_figures(out, config, model, params, evaluator, mu)
      if config.num_seeds > 1:
        paths['seeds'] = sps_figures.box_plot(
            os.path.join(out, 'seeds.png'), {f'{config.num_seeds} seeds': lp},
            config.eval.success_threshold,
            f'success rate {metrics["success_rate"]:.0%} (< {config.eval.success_threshold}, '
            f'dotted); pictures show seed {best}')
      return paths

    return project.Report(
        f'SPS evaluation of {workdir} at step {step} on {len(evaluator.data["frames"])} '
        f'held-out sequences ({config.num_seeds} seed(s); medians; pictures: seed {best})',
        metrics, figures, {'step': step, 'figure_seed': best,
                           'per_seed': {k: np.asarray(v).tolist() for k, v in per_seed.items()}})

  return init_state, score


PROJECT = project.Project(
    name='sps', default_config='configs/sps.py:two_body', validate=train.validate,
    make_task=lambda config, workdir: train.make_task(config), scorer=scorer,
    validate_saved=functools.partial(train.validate, num_devices=1, check_source=False))

evaluate = PROJECT.evaluate   # (workdir, step=None) -> metrics, as the notebook calls it


if __name__ == '__main__':
  cli.run_evaluate(evaluate)
