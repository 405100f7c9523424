"""The pretext and transfer losses, each a mean over the batch, and the objective of every task
(`task_loss`) built from them."""
import jax
import jax.numpy as jnp
import optax


def bce(logits, targets):
  """Binary cross-entropy with logits, mean over every element (multi-label targets in {0, 1})."""
  return optax.sigmoid_binary_cross_entropy(logits, targets).mean()


def mse(predictions, targets):
  return jnp.square(predictions - targets).mean()


def softmax_ce(logits, labels):
  """Cross-entropy of integer labels under softmax(logits)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def margin_contrastive(distance, similar, margin):
  """Hadsell, Chopra & LeCun (2006): y d^2 / 2 + (1 - y) max(0, m - d)^2 / 2 with y = 1 for a
  similar pair; mean over pairs."""
  similar = similar.astype(distance.dtype)
  return 0.5 * (similar * jnp.square(distance)
                + (1 - similar) * jnp.square(jnp.maximum(margin - distance, 0.0))).mean()


def nt_xent(z1, z2, temperature):
  """SimCLR's normalised-temperature cross-entropy: each of the 2N views must pick its partner
  among the other 2N - 1 by cosine similarity / temperature. z1, z2: (N, D). optax's NT-Xent
  with view i of both halves as one positive pair."""
  pair = jnp.arange(z1.shape[0])
  return optax.losses.ntxent(jnp.concatenate([z1, z2]), jnp.concatenate([pair, pair]),
                             temperature)


def accuracy(logits, labels):
  return (jnp.argmax(logits, -1) == labels).mean()


def multilabel_exact(logits, targets):
  """Share of examples whose every label is right at threshold 0.5."""
  return jnp.all((logits > 0) == (targets > 0.5), axis=-1).mean()


def topk_set_accuracy(scores, targets):
  """Share of examples whose k highest scores are exactly their k positive targets (k varies)."""
  k = (targets > 0).sum(-1, keepdims=True)
  rank = jnp.argsort(jnp.argsort(-scores, -1), -1)   # 0 = highest
  return jnp.all((rank < k) == (targets > 0), axis=-1).mean()


def pairwise_distance(a, b):
  """Euclidean distance between a (..., D) and b (..., D), with a finite gradient at 0."""
  return jnp.sqrt(jnp.square(a - b).sum(-1) + 1e-12)


def nt_xent_accuracy(z1, z2):
  """Share of views whose most similar other view is their partner."""
  z = jnp.concatenate([z1, z2])
  z = z / jnp.linalg.norm(z, axis=-1, keepdims=True).clip(1e-12)
  n2 = z.shape[0]
  sim = jnp.where(jnp.eye(n2, dtype=bool), -jnp.inf, z @ z.T)
  return (jnp.argmax(sim, -1) == (jnp.arange(n2) + n2 // 2) % n2).mean()



# ---------------------------------------------------------------------------
# The objective of each task.

def loss_kind(config):
  if config.loss.kind != 'auto':
    return config.loss.kind
  return 'mse' if config.pretext.target == 'weights' else 'bce'


def task_loss(out, batch, config):
  """(loss, metrics) of a model output on a batch of config.task."""
  t = config.task
  if t in ('mixup', 'scale'):
    kind, scores = loss_kind(config), out['scores']
    if kind == 'bce':
      loss = bce(scores, batch['which'])
    elif kind == 'margin':
      d = pairwise_distance(out['query'][:, None], out['candidates'])
      loss, scores = margin_contrastive(d, batch['which'], config.loss.margin), -d
    else:   # regression of the weights: mixup's sum to one, scale's lie in (0, 1]
      pred = jax.nn.softmax(scores) if t == 'mixup' else jax.nn.sigmoid(scores)
      loss = mse(pred, batch['weights'])
    return loss, {'loss': loss, 'accuracy': topk_set_accuracy(scores, batch['which'])}
  if t == 'simclr':
    loss = nt_xent(out['z1'], out['z2'], config.pretext.temperature)
    return loss, {'loss': loss, 'accuracy': nt_xent_accuracy(out['z1'], out['z2'])}
  if t == 'patchwork':
    y = batch['label'].astype(jnp.float32)
    loss = bce(out['logits'], y)
    return loss, {'loss': loss, 'accuracy': ((out['logits'] > 0) == (y > 0.5)).mean()}
  loss = softmax_ce(out['logits'], batch['label'])
  return loss, {'loss': loss, 'accuracy': accuracy(out['logits'], batch['label'])}
