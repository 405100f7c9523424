"""Evaluate a checkpoint: python -m vle.evaluate --workdir=DIR [--step=N].

Encodes the test set with eval.tokens tokens per image, with the VLE and with the baseline VAE
applied to residuals the same way, and writes DIR/eval/step_<N>/:
  metrics.json           MSE and SSIM (pixels in [0, 1]) after 1, 4 and eval.tokens tokens, the
                         share of images reaching eval.mse_threshold and the median tokens needed
                         (eval.tokens + 1 = never reached), ARI / foreground ARI of token
                         ownership against the true objects (synthetic scenes), and a
                         random-mask baseline's ARI
  per_token.png          MSE and SSIM after each token, VLE against the baseline
  tokens_vs_entropy.png  tokens needed to reach the threshold against image entropy
  tokens_<i>.png         per example: reconstruction after each token, each token's
                         contribution, its mask, and the baseline's reconstructions
  masks.png              per example: the image, the true objects, the token ownership of the
                         VLE and of the baseline
  training.png           training losses and test MSE after 4 tokens against steps

The metrics are computed in evaluation.py, the pictures drawn in figures.py.

The project's `PROJECT` is declared here (see sps/evaluate.py for why).
"""
from common import cli
from common import project
from vle import figures as vle_figures
from vle import train


def table_notes(metrics, config):
  """The report's footnote on median_tokens_to_threshold, whose 'never' is a number."""
  if not any(k.endswith('median_tokens_to_threshold') for k in metrics):
    return []
  e = config.eval
  return [f'(baseline_)median_tokens_to_threshold = {e.tokens + 1} (eval.tokens + 1) means never '
          f'reached: half the images or more keep MSE >= {e.mse_threshold} after {e.tokens} tokens']


def scorer(config, workdir):
  """(init_state, score) of a saved config, for Project.evaluate."""
  nets, _, init_state = train.make_init(config)

  def score(state, step):
    evaluator = train.make_evaluator(config, nets)
    per_token = evaluator.per_token(state.params)
    metrics = evaluator.metrics(state.params, per_token)
    figures = lambda out: vle_figures.write_figures(out, config, evaluator, state.params,
                                                    per_token, workdir)
    sizes = {f'params_{k}': train.num_params(v) for k, v in state.params.items()}
    return project.Report(
        f'vle evaluation of {workdir} at step {step} on {evaluator.source} '
        f'({config.model.kind} VLE, {config.eval.tokens} tokens; MSE with pixels in [0, 1]; '
        f'parameters {sizes})', metrics, figures,
        {'step': step, 'test_set': evaluator.source, **sizes}, table_notes(metrics, config))

  return init_state, score


PROJECT = project.Project(name='vle', default_config='configs/vle.py:vanilla',
                          validate=train.validate,
                          make_task=lambda config, workdir: train.make_task(config), scorer=scorer)

evaluate = PROJECT.evaluate   # (workdir, step=None) -> metrics, as the notebook calls it


if __name__ == '__main__':
  cli.run_evaluate(evaluate)
