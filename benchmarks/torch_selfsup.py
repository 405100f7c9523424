"""A PyTorch twin of the selfsup models, losses and optimizer, for speed comparisons.

Same architecture, sizes, loss and optimizer as `selfsup.models.Model`,
`selfsup.losses.task_loss` and `selfsup.train.make_optimizer`, for every task:

  * encoder: images in [0, 1] mapped to [-1, 1]; a stem Conv2d 3x3 (stride `stem_stride`,
    padding 1, no bias), norm, ReLU; residual blocks (conv3x3 - norm - ReLU - conv3x3 - norm,
    the second norm's scale starting at zero; the shortcut average-pooled when strided and
    1x1-projected when the width changes), the first block of every stage after the first
    with stride 2; global average pooling. The norm is GroupNorm with min(8, C) groups and
    flax's eps 1e-6, or BatchNorm2d (model.norm='batch');
  * MLP: Linear (no bias when followed by BatchNorm1d) - BatchNorm1d - ReLU per hidden layer,
    then a Linear out;
  * mixup / scale: queries and candidates through one encoder call (BatchNorm sees one
    batch), the projection MLP, then the siamese head on every (query, candidate) pair:
    'mlp' (an MLP on [q * c, |q - c|]), 'dot' or 'cosine'; quadrant / patchwork / classify:
    an MLP head on the features; simclr: the projection MLP on both views in one call;
  * losses as `task_loss`: BCE with logits (mean), the margin contrastive loss on Euclidean
    distances, MSE of softmax / sigmoid weights, NT-Xent (optax's: cosine similarity over
    temperature, each view's partner against the other 2N - 2 views), softmax cross-entropy;
    each with the task's accuracy metric;
  * optimizer: `Optimizer` below: optax's clip_by_global_norm (written by hand: optax scales
    by max_norm / norm when norm >= max_norm, clip_grad_norm_ by max_norm / (norm + 1e-6)),
    then torch's AdamW, which computes optax.adamw (eps outside the square root, decoupled
    weight decay on every parameter scaled by the learning rate), the learning rate following
    optax.linear_schedule(0, lr, warmup_steps) over the optimizer's own step count (zero on
    the first step, as in JAX).

BatchNorm: flax's momentum 0.9 is torch's 0.1, eps 1e-5 in both, batch statistics in training
and running statistics in eval mode in both; `load_flax_params` (in torch_selfsup_weights.py,
with the map from flax's parameters to the twin's) copies the running means and variances from
`batch_stats` too. One difference, outside the loss: torch updates the running
variance with the unbiased batch variance (times n / (n - 1)), flax with the biased one.

Layout: images come NHWC as in JAX; `to_images` gives the NCHW view, which is channels-last
in memory, what oneDNN runs fastest on CPU (`channels_last=False`: plain NCHW copies). Conv
kernels (kh, kw, in, out) and Dense kernels (in, out) are transposed into torch's layouts.
The frozen-encoder fine-tuning mode (finetune.mode='linear') and bfloat16 are not twinned.
"""
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

TASKS = ('mixup', 'scale', 'quadrant', 'patchwork', 'simclr', 'classify')
HEADS = ('dot', 'mlp', 'cosine')
IMAGE_KEYS = ('query', 'image', 'view1', 'view2')


# ---------------------------------------------------------------------------
# The model.

def _norm2d(kind, channels, zero_init=False):
  norm = (nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1) if kind == 'batch' else
          nn.GroupNorm(min(8, channels), channels, eps=1e-6))
  if zero_init:
    nn.init.zeros_(norm.weight)
  return norm


class ResidualBlock(nn.Module):
  def __init__(self, in_channels, features, stride=1, norm='group'):
    super().__init__()
    self.stride = stride
    self.conv0 = nn.Conv2d(in_channels, features, 3, stride, 1, bias=False)
    self.norm0 = _norm2d(norm, features)
    self.conv1 = nn.Conv2d(features, features, 3, 1, 1, bias=False)
    self.norm1 = _norm2d(norm, features, zero_init=True)
    self.proj = (nn.Conv2d(in_channels, features, 1, bias=False) if in_channels != features
                 else None)

  def forward(self, x):
    y = F.relu(self.norm0(self.conv0(x)))
    y = self.norm1(self.conv1(y))
    if self.stride > 1:
      x = F.avg_pool2d(x, self.stride)
    if self.proj is not None:
      x = self.proj(x)
    return F.relu(x + y)


class Encoder(nn.Module):
  """Images (N, 3, H, W) in [0, 1] -> features (N, widths[-1])."""

  def __init__(self, widths=(32, 64, 128), blocks=(1, 1, 1), stem_stride=1, norm='group'):
    super().__init__()
    self.stem = nn.Conv2d(3, widths[0], 3, stem_stride, 1, bias=False)
    self.stem_norm = _norm2d(norm, widths[0])
    layers, cin = [], widths[0]
    for i, (width, n) in enumerate(zip(widths, blocks)):
      for j in range(n):
        layers.append(ResidualBlock(cin, width, 2 if i > 0 and j == 0 else 1, norm))
        cin = width
    self.blocks = nn.ModuleList(layers)

  def forward(self, x):
    x = F.relu(self.stem_norm(self.stem(2.0 * x - 1.0)))
    for block in self.blocks:
      x = block(x)
    return x.mean((2, 3))


class MLP(nn.Module):
  def __init__(self, in_features, hidden, out, batch_norm=True):
    super().__init__()
    widths = (in_features,) + tuple(hidden)
    self.hidden = nn.ModuleList(nn.Linear(a, b, bias=not batch_norm)
                                for a, b in zip(widths, widths[1:]))
    self.norms = (nn.ModuleList(nn.BatchNorm1d(h, eps=1e-5, momentum=0.1) for h in hidden)
                  if batch_norm else None)
    self.out = nn.Linear(widths[-1], out)

  def forward(self, x):
    for i, layer in enumerate(self.hidden):
      x = layer(x)
      if self.norms is not None:
        x = self.norms[i](x)
      x = F.relu(x)
    return self.out(x)


def _unit(v):
  return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(1e-12)


class SiameseHead(nn.Module):
  """Query embeddings (B, D) and candidates' (B, n, D) -> scores (B, n)."""

  def __init__(self, kind='mlp', dim=64, hidden=(128,), batch_norm=True, temperature=0.0):
    super().__init__()
    if kind not in HEADS:
      raise ValueError(f'head kind {kind!r} is unknown; allowed values are {", ".join(HEADS)}')
    self.kind, self.temperature = kind, temperature or dim ** 0.5
    self.mlp = MLP(2 * dim, hidden, 1, batch_norm) if kind == 'mlp' else None

  def forward(self, q, c):
    q = q[:, None].expand_as(c)
    if self.kind == 'dot':
      return (q * c).sum(-1)
    if self.kind == 'cosine':
      return (_unit(q) * _unit(c)).sum(-1) / self.temperature
    b, n, d = c.shape
    pair = torch.cat([q * c, (q - c).abs()], -1).reshape(b * n, 2 * d)
    return self.mlp(pair).reshape(b, n)


class SelfSupTwin(nn.Module):
  """The network of one task; forward(batch) -> the JAX model's outputs (see `Model`)."""

  def __init__(self, task, widths=(32, 64, 128), blocks=(1, 1, 1), stem_stride=1, norm='group',
               projection=(128, 64), head_kind='mlp', head_hidden=(128,), head_batch_norm=True,
               head_temperature=0.0, num_classes=10, channels_last=True):
    super().__init__()
    if task not in TASKS:
      raise ValueError(f'task {task!r} is unknown; allowed values are {", ".join(TASKS)}')
    self.task, self.channels_last = task, channels_last
    self.encoder = Encoder(tuple(widths), tuple(blocks), stem_stride, norm)
    proj, feat = tuple(projection), widths[-1]
    if task in ('mixup', 'scale', 'simclr'):
      self.project = MLP(feat, proj[:-1], proj[-1], head_batch_norm)
    if task in ('mixup', 'scale'):
      self.head = SiameseHead(head_kind, proj[-1], tuple(head_hidden), head_batch_norm,
                              head_temperature)
    elif task != 'simclr':
      out = {'quadrant': 4, 'patchwork': 1}.get(task, num_classes)
      self.head = MLP(feat, tuple(head_hidden), out, head_batch_norm)
    if channels_last:
      self.to(memory_format=torch.channels_last)

  def to_images(self, nhwc):
    """(..., H, W, C) -> (..., C, H, W): a channels-last view, or an NCHW copy."""
    x = nhwc.movedim(-1, -3)
    return x if self.channels_last else x.contiguous()

  def forward(self, batch):
    """`batch`: the JAX batch as torch tensors, images NHWC (see `to_torch_batch`)."""
    if self.task == 'simclr':
      n = batch['view1'].shape[0]
      z = self.project(self.encoder(self.to_images(torch.cat([batch['view1'],
                                                              batch['view2']]))))
      return {'z1': z[:n], 'z2': z[n:]}
    if self.task in ('mixup', 'scale'):
      cands = batch['candidates']
      b, n = cands.shape[:2]
      images = torch.cat([batch['query'], cands.reshape(b * n, *cands.shape[2:])])
      e = self.project(self.encoder(self.to_images(images)))
      q, c = e[:b], e[b:].reshape(b, n, -1)
      return {'scores': self.head(q, c), 'query': q, 'candidates': c}
    x = batch['image'] if self.task == 'classify' else batch['query']
    logits = self.head(self.encoder(self.to_images(x)))
    return {'logits': logits[:, 0] if self.task == 'patchwork' else logits}


def from_config(config, num_classes=10, channels_last=True):
  """The twin of `selfsup.train.make_model(config, num_classes)`."""
  m, h = config.model, config.head
  classify = config.task == 'classify'
  if classify and config.finetune.mode != 'full':
    raise ValueError('the torch twin fine-tunes the whole model only (finetune.mode=full), '
                     f'not {config.finetune.mode!r}')
  return SelfSupTwin(
      config.task, tuple(m.widths), tuple(m.blocks), m.stem_stride, m.norm, tuple(m.projection),
      h.kind, tuple(config.finetune.hidden if classify else h.hidden), h.batch_norm,
      h.temperature, num_classes, channels_last)


def num_params(model):
  return sum(p.numel() for p in model.parameters())


def to_torch_batch(batch, device='cpu'):
  """A JAX batch (numpy arrays) as torch tensors on `device`, layouts unchanged (NHWC)."""
  return {k: torch.from_numpy(np.array(v)).to(device) for k, v in batch.items()}


# ---------------------------------------------------------------------------
# Losses.

def loss_kind(config):
  """`selfsup.losses.loss_kind`: 'auto' is mse for target 'weights', bce otherwise."""
  if config.loss.kind != 'auto':
    return config.loss.kind
  return 'mse' if config.pretext.target == 'weights' else 'bce'


def topk_set_accuracy(scores, targets):
  k = (targets > 0).sum(-1, keepdim=True)
  rank = scores.neg().argsort(-1).argsort(-1)
  return ((rank < k) == (targets > 0)).all(-1).float().mean()


def nt_xent(z1, z2, temperature):
  """optax.losses.ntxent with view i of both halves as one positive pair: the cross-entropy
  of each view's partner among the other 2N - 1 views by cosine similarity / temperature.

  Returns (loss, the similarities (2N, 2N) with -inf on the diagonal, each view's partner).
  """
  z = torch.cat([z1, z2])
  eps = torch.finfo(z.dtype).eps
  z = z * torch.rsqrt(z.square().sum(-1, keepdim=True).clamp_min(eps))
  n = z1.shape[0]
  self_pair = torch.eye(2 * n, dtype=torch.bool, device=z.device)
  sim = (z @ z.T / temperature).masked_fill(self_pair, float('-inf'))
  partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
  return F.cross_entropy(sim, partner), sim, partner


def task_loss(out, batch, config):
  """(loss, metrics {'loss', 'accuracy'}) as `selfsup.losses.task_loss`."""
  t = config.task
  if t in ('mixup', 'scale'):
    kind, scores, which = loss_kind(config), out['scores'], batch['which']
    if kind == 'bce':
      loss = F.binary_cross_entropy_with_logits(scores, which)
    elif kind == 'margin':
      d = torch.sqrt((out['query'][:, None] - out['candidates']).square().sum(-1) + 1e-12)
      loss = 0.5 * (which * d.square() +
                    (1 - which) * F.relu(config.loss.margin - d).square()).mean()
      scores = -d
    else:
      pred = scores.softmax(-1) if t == 'mixup' else scores.sigmoid()
      loss = (pred - batch['weights']).square().mean()
    return loss, {'loss': loss, 'accuracy': topk_set_accuracy(scores.detach(), which)}
  if t == 'simclr':
    loss, sim, partner = nt_xent(out['z1'], out['z2'], config.pretext.temperature)
    return loss, {'loss': loss, 'accuracy': (sim.detach().argmax(-1) == partner).float().mean()}
  if t == 'patchwork':
    y = batch['label'].float()
    loss = F.binary_cross_entropy_with_logits(out['logits'], y)
    return loss, {'loss': loss, 'accuracy': ((out['logits'].detach() > 0) == (y > 0.5)).float()
                  .mean()}
  loss = F.cross_entropy(out['logits'], batch['label'].long())
  return loss, {'loss': loss,
                'accuracy': (out['logits'].detach().argmax(-1) == batch['label']).float().mean()}


def loss_fn(model, batch, config):
  """(loss, metrics) of the model in training mode (batch statistics) on a torch batch."""
  model.train()
  return task_loss(model(batch), batch, config)


# ---------------------------------------------------------------------------
# Optimizer and train step.

class Optimizer:
  """`selfsup.train.make_optimizer`: optax.chain(clip_by_global_norm(grad_clip),
  adamw(linear_schedule(0, lr, warmup_steps), weight_decay)) (no clipping when grad_clip is 0,
  a constant rate when warmup_steps is 0)."""

  def __init__(self, params, lr, warmup_steps=0, grad_clip=0.0, weight_decay=0.0):
    self.params = list(params)
    self.lr, self.warmup_steps, self.grad_clip = lr, warmup_steps, grad_clip
    self.inner = torch.optim.AdamW(self.params, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                   weight_decay=weight_decay, foreach=True)
    self.count = 0   # optax's schedule count: the updates made so far

  def learning_rate(self):
    if not self.warmup_steps:
      return self.lr
    return self.lr * min(self.count, self.warmup_steps) / self.warmup_steps

  def zero_grad(self):
    for p in self.params:
      p.grad = None

  @torch.no_grad()
  def clip(self, grads):
    """g * max_norm / norm where norm >= max_norm, without a host sync."""
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    scale = torch.where(norm < self.grad_clip, torch.ones_like(norm), self.grad_clip / norm)
    torch._foreach_mul_(grads, scale)
    return norm

  @torch.no_grad()
  def step(self):
    if self.grad_clip > 0:
      self.clip([p.grad for p in self.params])
    for group in self.inner.param_groups:
      group['lr'] = self.learning_rate()
    self.inner.step()
    self.count += 1


def make_optimizer(model, config):
  o = config.optim
  return Optimizer(model.parameters(), o.lr, o.warmup_steps, o.grad_clip, o.weight_decay)


def train_step(model, opt, batch, config):
  """One step: loss, backward, clipping and the update. Returns the detached loss."""
  opt.zero_grad()
  loss, _ = loss_fn(model, batch, config)
  loss.backward()
  opt.step()
  return loss.detach()
