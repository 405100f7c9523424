"""selfsup evaluation metrics: kNN and linear-probe accuracy of the encoder's features, the
task's own loss and accuracy on validation images, and the numbers the evaluation's pictures
show (confusion matrix, most confident mistakes, gradient norm per layer)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from selfsup import data as D
from selfsup import losses
from selfsup import models
from selfsup import pretext

EVAL_STREAM = 2   # fold_in tag of the evaluation batch's key stream (training's data is 1)


def knn_predict(train_features, train_labels, query_features, k, num_classes, temperature):
  """Class scores (Q, num_classes) of a weighted kNN on cosine similarity: each of the k nearest
  training examples votes for its class with weight exp(similarity / temperature)."""
  unit = lambda f: f / jnp.linalg.norm(f, axis=-1, keepdims=True).clip(1e-12)
  sim = unit(query_features) @ unit(train_features).T
  top, idx = jax.lax.top_k(sim, k)
  votes = jax.nn.one_hot(train_labels[idx], num_classes) * jnp.exp(top / temperature)[..., None]
  return votes.sum(1)


@functools.partial(jax.jit, static_argnames=('num_classes', 'steps'))
def linear_probe(train_features, train_labels, query_features, num_classes, steps, lr, l2):
  """Logits (Q, num_classes) of a softmax regression fitted on standardised frozen features by
  `steps` full-batch Adam steps with an l2 penalty."""
  mean, std = train_features.mean(0), train_features.std(0) + 1e-6
  x, q = (train_features - mean) / std, (query_features - mean) / std
  params = {'w': jnp.zeros((x.shape[1], num_classes)), 'b': jnp.zeros(num_classes)}
  opt = optax.adam(lr)

  def loss(p):
    return losses.softmax_ce(x @ p['w'] + p['b'], train_labels) + l2 * jnp.square(p['w']).sum()

  def step(carry, _):
    p, s = carry
    u, s = opt.update(jax.grad(loss)(p), s)
    return (optax.apply_updates(p, u), s), None

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
  return q @ params['w'] + params['b']


class Evaluator:
  """kNN and linear-probe accuracy of the encoder's features (labelled train -> validation),
  the task's own loss and accuracy on validation images (no augmentation), and for classify
  runs the classifier's validation accuracy."""

  def __init__(self, config, model, data):
    self.config, self.model, self.data = config, model, data
    e = config.eval
    val_x = jnp.asarray(data['val'][0])
    self._features = jax.jit(lambda params, stats, x: model.apply(
        {'params': params, 'batch_stats': stats}, D.to_float(x), method=models.Model.features))
    self._logits = jax.jit(lambda params, stats, x: model.apply(
        {'params': params, 'batch_stats': stats}, {'image': D.to_float(x)})['logits'])
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), EVAL_STREAM)
    if config.task != 'classify':
      # A fixed batch of the pretext task made from validation images, unaugmented.
      self.task_batch = jax.jit(pretext.make_batch_fn(config, val_x, train=False))(key)

      def task_metrics(params, stats, batch):   # the batch is an argument, not a constant
        out, _ = models.apply_model(model, params, stats, batch, train=False)
        return losses.task_loss(out, batch, config)[1]

      self._task_metrics = jax.jit(task_metrics)
    self._knn = jax.jit(functools.partial(knn_predict, k=e.knn_k,
                                          num_classes=data['num_classes'],
                                          temperature=e.knn_temperature))

  def _batched(self, fn, params, stats, images):
    bs = self.config.eval.batch_size
    return np.concatenate([np.asarray(fn(params, stats, images[i:i + bs]))
                           for i in range(0, len(images), bs)])

  def features(self, state, split):
    return self._batched(self._features, state.params, state.batch_stats, self.data[split][0])

  def predictions(self, state):
    """{'knn', 'probe', and for classify 'classifier'}: validation class scores (N, classes)."""
    e, k = self.config.eval, self.data['num_classes']
    tr, va = self.features(state, 'train'), self.features(state, 'val')
    ty = jnp.asarray(self.data['train'][1])
    out = {'knn': np.asarray(self._knn(tr, ty, va)),
           'probe': np.asarray(linear_probe(tr, ty, va, k, e.probe_steps, e.probe_lr,
                                            e.probe_l2))}
    if self.config.task == 'classify':
      out['classifier'] = self._batched(self._logits, state.params, state.batch_stats,
                                        self.data['val'][0])
    return out

  def metrics(self, state, predictions=None):
    predictions = predictions or self.predictions(state)
    labels = np.asarray(self.data['val'][1])
    out = {f'{name}_accuracy': float((p.argmax(-1) == labels).mean())
           for name, p in predictions.items()}
    if self.config.task != 'classify':
      out.update({f'task_{k}': float(v)
                  for k, v in self._task_metrics(state.params, state.batch_stats,
                                                        self.task_batch).items()})
    return out


def confusion_matrix(labels, predictions, num_classes):
  """(num_classes, num_classes) counts: row = true class, column = predicted."""
  m = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(m, (np.asarray(labels), np.asarray(predictions)), 1)
  return m


def top_mistakes(scores, labels, n):
  """Indices of the (up to) n wrong predictions with the highest predicted probability."""
  p = np.exp(scores - scores.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  pred = p.argmax(-1)
  wrong = np.flatnonzero(pred != labels)
  return wrong[np.argsort(-p[wrong, pred[wrong]], kind='stable')][:n], pred, p


def layer_grad_norms(grads):
  """{layer path: l2 norm of its gradients} (a layer = the module owning the leaves)."""
  out = {}
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    name = '/'.join(str(getattr(k, 'key', k)) for k in path[:-1])
    out[name] = out.get(name, 0.0) + float(np.square(np.asarray(g)).sum())
  return {k: v ** 0.5 for k, v in out.items()}
