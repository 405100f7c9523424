"""A small ResNet encoder, the projection and siamese heads, and one model per task.

Every model's parameters are {'encoder': ..., <the rest>}, so a classifier can take the encoder
subtree of any pretext run. BatchNorm (MLP heads, and the encoder with norm='batch') keeps its
running statistics in the 'batch_stats' collection; `train` picks batch or running statistics.
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.conv import Conv

HEADS = ('dot', 'mlp', 'cosine')
NORMS = ('group', 'batch')


def _norm(kind, train, name=None, zero_init=False):
  scale_init = nn.initializers.zeros if zero_init else nn.initializers.ones
  if kind == 'batch':
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, scale_init=scale_init,
                        name=name)
  return lambda x: nn.GroupNorm(num_groups=min(8, x.shape[-1]), scale_init=scale_init,
                                name=name)(x)


class ResidualBlock(nn.Module):
  """conv3x3 - norm - relu - conv3x3 - norm, plus the input (average-pooled and 1x1-projected
  when the stride or the width changes); the last norm starts at zero so the block starts as
  the identity."""
  features: int
  strides: int = 1
  norm: str = 'group'
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, train):
    conv = lambda f, k, s: Conv(f, (k, k), s, padding=k // 2, use_bias=False,
                                impl=self.conv_impl)
    y = conv(self.features, 3, self.strides)(x)
    y = nn.relu(_norm(self.norm, train)(y))
    y = conv(self.features, 3, 1)(y)
    y = _norm(self.norm, train, zero_init=True)(y)
    if self.strides > 1:
      x = nn.avg_pool(x, (self.strides,) * 2, (self.strides,) * 2)
    if x.shape[-1] != self.features:
      x = conv(self.features, 1, 1)(x)
    return nn.relu(x + y)


class Encoder(nn.Module):
  """Images (B, H, W, 3) in [0, 1] -> features (B, widths[-1]) after global average pooling."""
  widths: Sequence[int] = (32, 64, 128)
  blocks: Sequence[int] = (1, 1, 1)
  stem_stride: int = 1
  norm: str = 'group'
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, train):
    x = 2.0 * x - 1.0
    x = Conv(self.widths[0], (3, 3), self.stem_stride, padding=1, use_bias=False,
             impl=self.conv_impl)(x)
    x = nn.relu(_norm(self.norm, train)(x))
    for i, (width, n) in enumerate(zip(self.widths, self.blocks)):
      for j in range(n):
        x = ResidualBlock(width, 2 if i > 0 and j == 0 else 1, self.norm, self.conv_impl)(x, train)
    return x.mean(axis=(1, 2))


class MLP(nn.Module):
  """Dense layers with ReLU (and BatchNorm before each ReLU when batch_norm) then a Dense out."""
  hidden: Sequence[int]
  out: int
  batch_norm: bool = True

  @nn.compact
  def __call__(self, x, train):
    for h in self.hidden:
      x = nn.Dense(h, use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = nn.relu(x)
    return nn.Dense(self.out)(x)


class SiameseHead(nn.Module):
  """Scores how a query embedding (B, D) relates to each candidate's (B, n, D) -> (B, n).

  dot: <q, c>; cosine: cos(q, c) / temperature (temperature 0 = 'auto' = sqrt(D));
  mlp: an MLP on [q * c, |q - c|] (shared over candidates)."""
  kind: str = 'mlp'
  hidden: Sequence[int] = (128,)
  batch_norm: bool = True
  temperature: float = 0.0

  @nn.compact
  def __call__(self, q, c, train):
    q = jnp.broadcast_to(q[:, None], c.shape)
    if self.kind == 'dot':
      return (q * c).sum(-1)
    if self.kind == 'cosine':
      t = self.temperature or q.shape[-1] ** 0.5
      unit = lambda v: v / jnp.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)
      return (unit(q) * unit(c)).sum(-1) / t
    pair = jnp.concatenate([q * c, jnp.abs(q - c)], -1)
    b, n, d = pair.shape
    return MLP(tuple(self.hidden), 1, self.batch_norm)(pair.reshape(b * n, d), train).reshape(b, n)


class Model(nn.Module):
  """The network of one task. __call__(batch, train) -> outputs:

  mixup / scale   {'scores': (B, n), 'query': (B, D), 'candidates': (B, n, D)} embeddings
  quadrant        {'logits': (B, 4)}
  patchwork       {'logits': (B,)}
  simclr          {'z1': (B, D), 'z2': (B, D)}
  classify        {'logits': (B, num_classes)}
  """
  task: str
  encoder: Encoder
  projection: Sequence[int] = (128, 64)
  head_kind: str = 'mlp'
  head_hidden: Sequence[int] = (128,)
  head_batch_norm: bool = True
  head_temperature: float = 0.0
  num_classes: int = 10
  frozen_encoder: bool = False   # classify: a linear probe / head on fixed features

  def setup(self):
    proj = tuple(self.projection)
    if self.task in ('mixup', 'scale', 'simclr'):
      self.project = MLP(proj[:-1], proj[-1], self.head_batch_norm)
    if self.task in ('mixup', 'scale'):
      self.head = SiameseHead(self.head_kind, tuple(self.head_hidden), self.head_batch_norm,
                              self.head_temperature)
    else:
      out = {'quadrant': 4, 'patchwork': 1, 'simclr': 0}.get(self.task, self.num_classes)
      if out:
        self.head = MLP(tuple(self.head_hidden), out, self.head_batch_norm)

  def features(self, images, train=False):
    return self.encoder(images, train)

  def __call__(self, batch, train=False):
    if self.task == 'simclr':
      n = batch['view1'].shape[0]
      z = self.project(self.encoder(jnp.concatenate([batch['view1'], batch['view2']]), train),
                       train)
      return {'z1': z[:n], 'z2': z[n:]}
    if self.task in ('mixup', 'scale'):
      cands = batch['candidates']
      b, n = cands.shape[:2]
      # One encoder call over queries and candidates: BatchNorm sees one batch.
      images = jnp.concatenate([batch['query'], cands.reshape(b * n, *cands.shape[2:])])
      e = self.project(self.encoder(images, train), train)
      q, c = e[:b], e[b:].reshape(b, n, -1)
      return {'scores': self.head(q, c, train), 'query': q, 'candidates': c}
    if self.task == 'classify' and self.frozen_encoder:
      f = jax.lax.stop_gradient(self.encoder(batch['image'], False))
    else:
      f = self.encoder(batch['image'] if self.task == 'classify' else batch['query'], train)
    logits = self.head(f, train)
    return {'logits': logits[:, 0] if self.task == 'patchwork' else logits}


def apply_model(model, params, batch_stats, batch, train):
  """(outputs, new batch_stats): in training BatchNorm uses and updates the batch's statistics."""
  variables = {'params': params, 'batch_stats': batch_stats}
  if train and batch_stats:
    out, updated = model.apply(variables, batch, train=True, mutable=['batch_stats'])
    return out, updated['batch_stats']
  return model.apply(variables, batch, train=train), batch_stats
