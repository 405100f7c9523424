"""Evaluate a checkpoint: python -m selfsup.evaluate --workdir=DIR [--step=N].

Writes DIR/eval/step_<N>/:
  metrics.json     kNN and linear-probe accuracy of the encoder's features (labelled train ->
                   validation), the classifier's validation accuracy (finetune runs), the pretext
                   task's loss and accuracy on unaugmented validation images (pretext runs), and
                   the gradient norm of every layer on one training batch
  confusion.png    the validation confusion matrix (classifier, else linear probe), rows = truth
  mistakes.png     the validation images predicted wrong with the highest confidence
  grad_norms.png   gradient norm per layer on one training batch (the log's first suspect)
  examples.png     what the model is trained on: a few examples of the task with their targets
  training.png     training loss and accuracy, and the evaluation accuracies, against steps

The project's `PROJECT` is declared here (see sps/evaluate.py for why).
"""
import functools

import jax
import numpy as np

from common import cli
from common import project
from selfsup import evaluation
from selfsup import figures
from selfsup import pretext
from selfsup import train


def scorer(config, workdir):
  """(init_state, score) of a saved config, for Project.evaluate."""
  data = train.datasets(config)
  model, tx, init_state = train.make_init(config, data['num_classes'])

  def score(state, step):
    evaluator = evaluation.Evaluator(config, model, data)
    predictions = evaluator.predictions(state)
    metrics = evaluator.metrics(state, predictions)

    # Gradients of every layer on one training batch (augmented, as in training).
    _, loss_fn = train.make_train_step(model, tx, config)
    pool = data['train'][0] if config.task == 'classify' else data['unlabelled']
    labels = data['train'][1] if config.task == 'classify' else None
    batch = jax.jit(pretext.make_batch_fn(config, pool, labels))(jax.random.PRNGKey(config.seed))
    grads, _ = jax.jit(jax.grad(loss_fn, has_aux=True))(state.params, state.batch_stats, batch)
    grad_norms = evaluation.layer_grad_norms(grads)
    num_params = int(sum(np.prod(x.shape) for x in jax.tree.leaves(state.params)))
    return project.Report(
        f'selfsup evaluation of {workdir} ({config.task}) at step {step} on '
        f'{data["source"]}; {num_params} parameters', metrics,
        lambda out: figures.write_figures(out, config, data, predictions, metrics, batch,
                                          grad_norms, step, workdir),
        {'step': step, 'task': config.task, 'data': data['source'], 'num_params': num_params,
         'grad_norms': grad_norms, 'init_from': config.finetune.init_from})

  return init_state, score


PROJECT = project.Project(
    name='selfsup', default_config='configs/selfsup.py:mixup', validate=train.validate,
    make_task=lambda config, workdir: train.make_task(config), scorer=scorer,
    validate_saved=functools.partial(train.validate, num_devices=1, check_source=False))

evaluate = PROJECT.evaluate   # (workdir, step=None) -> metrics, as the notebook calls it


if __name__ == '__main__':
  cli.run_evaluate(evaluate)
