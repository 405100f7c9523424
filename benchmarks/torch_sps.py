"""A PyTorch twin of the SPS model and its training step, for speed comparisons on CPU.

Same architecture, sizes and loss computation as `sps/models.py` and `sps.losses.loss_fn`:

  * encoder: Conv2d k4 s2 p1 (3 -> 64 -> 128 -> 256) with ReLU, flatten, Linear mu / logvar;
  * decoder: MLP z -> 16 -> 32 -> 64 (ReLU), Linear -> 4096 (ReLU), reshape 4x4x256,
    ConvTranspose2d k4 s2 p1 (256 -> 128 -> 64 -> 3), ReLU between, none at the end;
  * prior: Elman RNNCell(s) (tanh) + Linear head, looped over time with scheduled sampling
    (the input at step t is z[t] where teacher[t], else the previous prediction);
  * loss: self-reconstruction MSE of sigmoid(decode(z)) (reparameterised z), KL, and per
    path (identity, plus the symmetry paths: a random per-example affine map g = (A, b) on z,
    the prior run on g.z and its predictions mapped back with g^-1) the z-prediction MSE
    against the detached z[c:] and the image-prediction MSE of the B*(T-c) decoded frames;
  * optimiser: Adam, with clip_grad_norm_ applied before each step.

Layout: the twin takes frames NHWC, like the JAX model, and runs its convolutions in
channels-last memory format (the NCHW view of an NHWC tensor, `x.permute(0, 3, 1, 2)`),
which is what oneDNN runs fastest on CPU (`channels_last=False` gives plain NCHW).
Flattening before the encoder heads and the reshape after the decoder's dense layer
use (H, W, C) order, as in the JAX model, so weights map one to one (`load_flax_params`).

The Elman cell keeps a single bias: `nn.RNNCell` has bias_ih and bias_hh, which only ever
appear summed, and flax's SimpleCell has one, so bias_hh is removed; the parameter counts
of the two models are then equal.
"""
import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class Encoder(nn.Module):
  """Frames (N, C, 32, 32) -> (mu, logvar), each (N, z_dim)."""

  def __init__(self, z_dim, channels=(64, 128, 256), in_channels=3, image_size=32):
    super().__init__()
    chans = (in_channels,) + tuple(channels)
    self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, 2, 1) for a, b in zip(chans, chans[1:]))
    side = image_size // 2 ** len(channels)
    self.mu = nn.Linear(side * side * chans[-1], z_dim)
    self.logvar = nn.Linear(side * side * chans[-1], z_dim)

  def forward(self, x):
    for conv in self.convs:
      x = F.relu(conv(x))
    h = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)   # (H, W, C) order, as in JAX
    return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
  """z (N, z_dim) -> frame logits (N, C, 32, 32)."""

  def __init__(self, z_dim, hidden=(16, 32, 64), channels=(256, 128, 64), out_channels=3,
               base=4, channels_last=True, last_relu=False):
    super().__init__()
    self.last_relu = last_relu
    widths = (z_dim,) + tuple(hidden)
    self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
    self.base, self.c0, self.channels_last = base, channels[0], channels_last
    self.fc = nn.Linear(widths[-1], base * base * channels[0])
    chans = tuple(channels) + (out_channels,)
    self.convs = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, 2, 1) for a, b in zip(chans, chans[1:]))

  def forward(self, z):
    h = z
    for layer in self.hidden:
      h = F.relu(layer(h))
    h = self.fc(h)
    h = F.relu(h) if self.last_relu else h
    h = h.reshape(h.shape[0], self.base, self.base, self.c0).permute(0, 3, 1, 2)
    if not self.channels_last:
      h = h.contiguous()
    for i, conv in enumerate(self.convs):
      h = conv(h)
      if i < len(self.convs) - 1:
        h = F.relu(h)
    return h


def _single_bias_rnn_cell(in_features, width):
  cell = nn.RNNCell(in_features, width, nonlinearity='tanh')
  del cell.bias_hh
  cell.register_parameter('bias_hh', None)
  return cell


class Prior(nn.Module):
  """z_in (B, S, d), teacher (B, S) bool -> predictions of z[1..S] (B, S, d)."""

  def __init__(self, z_dim, width=32, depth=1):
    super().__init__()
    self.cells = nn.ModuleList(_single_bias_rnn_cell(z_dim if i == 0 else width, width)
                               for i in range(depth))
    self.head = nn.Linear(width, z_dim)
    self.width = width

  def forward(self, z_in, teacher):
    b, s, _ = z_in.shape
    hs = [z_in.new_zeros(b, self.width) for _ in self.cells]
    prev = torch.zeros_like(z_in[:, 0])
    preds = []
    for t in range(s):
      x = torch.where(teacher[:, t, None], z_in[:, t], prev)
      for i, cell in enumerate(self.cells):
        hs[i] = x = cell(x, hs[i])
      prev = self.head(x)
      preds.append(prev)
    return torch.stack(preds, dim=1)


class SPSTwin(nn.Module):
  def __init__(self, z_dim=3, enc_channels=(64, 128, 256), dec_hidden=(16, 32, 64),
               dec_channels=(256, 128, 64), image_channels=3, prior_width=32, prior_depth=1,
               channels_last=True, dec_last_relu=False):
    super().__init__()
    self.channels_last = channels_last
    self.encoder = Encoder(z_dim, enc_channels, image_channels)
    self.decoder = Decoder(z_dim, dec_hidden, dec_channels, image_channels,
                           channels_last=channels_last, last_relu=dec_last_relu)
    self.prior = Prior(z_dim, prior_width, prior_depth)

  def to_images(self, frames_nhwc):
    """(N, H, W, C) -> the (N, C, H, W) tensor the convolutions take (a view if channels-last)."""
    x = frames_nhwc.permute(0, 3, 1, 2)
    return x if self.channels_last else x.contiguous()


def from_config(config, channels_last=True):
  """The twin of `sps.train.make_model(config)` (Elman prior only)."""
  m = config.model
  if m.prior_cell != 'rnn':
    raise ValueError(f'the torch twin has only the Elman prior, not {m.prior_cell!r}')
  return SPSTwin(m.z_dim, tuple(m.enc_channels), tuple(m.dec_hidden), tuple(m.dec_channels),
                 prior_width=m.prior_width, prior_depth=m.prior_depth,
                 channels_last=channels_last, dec_last_relu=m.dec_last_relu)


def num_params(model):
  return sum(p.numel() for p in model.parameters())


def teacher_prob(step, kind='sigmoid', duration=30000.0):
  """As `sps.losses.teacher_prob`, as a float."""
  if kind == 'sigmoid':
    return 2200.0 / (2200.0 + math.exp((step + 8000.0) / 2200.0))
  if kind == 'linear':
    return min(max(1.0 - step / duration, 0.0), 1.0)
  return 1.0


# ---------------------------------------------------------------------------
# Symmetry transforms, batched: A (B, d, d) orthogonal, b (B, d).

def random_rotation(n, batch, gen=None):
  """Haar-random SO(n) elements (batch, n, n): QR of a Gaussian, sign- and det-corrected."""
  q, r = torch.linalg.qr(torch.randn(batch, n, n, generator=gen))
  q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
  flip = torch.where(torch.linalg.det(q) < 0, -1.0, 1.0)
  q = q.clone()
  q[:, :, 0] *= flip[:, None]
  return q


def sample_element(group, z_dim, batch, gen=None, trans_dist='normal', trans_scale=1.0):
  """One element of `group` (an `sps.symmetry.Group`) per example, as (A, b) on all of z."""
  a = torch.eye(z_dim).repeat(batch, 1, 1)
  b = torch.zeros(batch, z_dim)
  if group.kind == 'R':
    rot = random_rotation(group.n, batch, gen)
    for s in group.slices:
      idx = torch.tensor(s)
      a[:, idx[:, None], idx[None, :]] = rot
  else:
    if trans_dist == 'normal':
      t = trans_scale * torch.randn(batch, group.n, generator=gen)
    else:
      t = trans_scale * (2 * torch.rand(batch, group.n, generator=gen) - 1)
    for s in group.slices:
      b[:, torch.tensor(s)] = t
  return a, b


def sample_transforms(groups, z_dim, batch, mode, p_identity, gen=None, trans_dist='normal',
                      trans_scale=1.0):
  """Like `sps.symmetry.sample_transform` vmapped over the batch ('sample' or 'compose')."""
  elems = [sample_element(g, z_dim, batch, gen, trans_dist, trans_scale) for g in groups]
  if mode == 'compose':
    a, b = torch.eye(z_dim).repeat(batch, 1, 1), torch.zeros(batch, z_dim)
    for ae, be in elems:   # e after (a, b): A_e (A z + b) + b_e
      a, b = ae @ a, (ae @ b[..., None])[..., 0] + be
  elif mode == 'sample':
    pick = torch.randint(0, len(groups), (batch,), generator=gen)
    a = torch.stack([e[0] for e in elems])[pick, torch.arange(batch)]
    b = torch.stack([e[1] for e in elems])[pick, torch.arange(batch)]
  else:
    raise ValueError(f'mode {mode!r}: takes "sample" or "compose"')
  return with_identity(a, b, p_identity, gen)


def with_identity(a, b, p_identity, gen=None):
  """Each example keeps (a, b) with probability 1 - p_identity, else gets the identity."""
  batch, z_dim = b.shape
  keep = torch.rand(batch, generator=gen) >= p_identity
  eye = torch.eye(z_dim).expand_as(a)
  return torch.where(keep[:, None, None], a, eye), torch.where(keep[:, None], b, 0.0)


def act(g, z):
  """g . z = A z + b for z (B, T, d)."""
  a, b = g
  return torch.einsum('bij,btj->bti', a, z) + b[:, None]


def act_inverse(g, z):
  """g^-1 . z = A^T (z - b)."""
  a, b = g
  return torch.einsum('bji,btj->bti', a, z - b[:, None])


def symmetry_paths(config, z, x, gen=None):
  """[(name, g, z, x)] like `sps.losses.symmetry_paths`."""
  from sps import symmetry   # pure Python spec parsing, shared with the JAX code
  s = config.symmetry
  if not s.k:
    return []
  groups = symmetry.parse(s.spec, config.model.z_dim)
  bsz, d = z.shape[0], config.model.z_dim
  idx = torch.arange(bsz // s.k).repeat_interleave(s.k)
  z, x = z[idx], x[idx]
  kw = dict(gen=gen, trans_dist=s.trans_dist, trans_scale=s.trans_scale)
  if s.mode == 'each':
    return [(str(grp), with_identity(*sample_element(grp, d, bsz, **kw), s.p_identity, gen), z, x)
            for grp in groups]
  return [('symmetry', sample_transforms(groups, d, bsz, s.mode, s.p_identity, **kw), z, x)]


# ---------------------------------------------------------------------------
# Loss and train step.

def reconstruction(logits, target, kind='mse'):
  if kind == 'mse':
    return torch.mean((torch.sigmoid(logits) - target) ** 2)
  return F.binary_cross_entropy_with_logits(logits, target)


def prediction_losses(model, z, x, g, p_teacher, context, kind='mse', gen=None):
  """One prior path, as `sps.losses.prediction_losses`: (z loss, image loss)."""
  b, t, d = z.shape
  z_in = z if g is None else act(g, z)
  teacher = (torch.rand(b, t - 1, generator=gen) < p_teacher) | (torch.arange(t - 1) < context)[None]
  z_hat = model.prior(z_in[:, :-1], teacher)
  if g is not None:
    z_hat = act_inverse(g, z_hat)
  z_pred = z_hat[:, context - 1:]
  z_loss = torch.mean((z_pred - z[:, context:].detach()) ** 2)
  logits = model.decoder(z_pred.reshape(-1, d))
  target = model.to_images(x[:, context:].reshape((-1,) + x.shape[2:]))
  return z_loss, reconstruction(logits, target, kind)


def loss_fn(model, config, x, p_teacher, gen=None, with_symmetry=True):
  """Total loss and its terms for frames x (B, T, H, W, C) in [0, 1], as `sps.losses.loss_fn`."""
  b, t = x.shape[:2]
  flat = model.to_images(x.reshape((b * t,) + x.shape[2:]))
  mu, logvar = model.encoder(flat)
  if config.model.vae:
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen)
  else:
    z = mu
  w = config.loss
  terms = {'self_recon': reconstruction(model.decoder(z), flat, w.kind)}
  total = w.self_recon * terms['self_recon']
  if config.model.vae:
    terms['kl'] = torch.mean(torch.sum(0.5 * (torch.exp(logvar) + mu ** 2 - 1.0 - logvar), -1))
    total = total + w.kl * terms['kl']
  z = z.reshape(b, t, -1)
  paths = [('identity', None, z, x)]
  if with_symmetry:
    paths += symmetry_paths(config, z, x, gen)
  for name, g, zp, xp in paths:
    z_loss, img_loss = prediction_losses(model, zp, xp, g, p_teacher, w.rnn_min_context,
                                         w.kind, gen)
    terms[f'z_pred/{name}'], terms[f'image_pred/{name}'] = z_loss, img_loss
    total = total + w.z_pred * z_loss + w.image_pred * img_loss
  terms['loss'] = total
  return total, terms


def make_optimizer(model, config):
  o = config.optim
  if o.weight_decay > 0:
    return torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
  return torch.optim.Adam(model.parameters(), lr=o.lr)


def train_step(model, opt, config, x, step, gen=None):
  """One step: loss, backward, global-norm clipping, Adam. Returns the detached loss."""
  p = teacher_prob(step, config.schedule.kind, config.schedule.duration)
  opt.zero_grad(set_to_none=True)
  total, _ = loss_fn(model, config, x, p, gen)
  total.backward()
  if config.optim.grad_clip > 0:
    nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
  opt.step()
  return total.detach()


def load_flax_params(model, params):
  """Copies the JAX model's parameters (`model.init(...)` of `sps.models.SPS`) into the twin."""
  p = params['params'] if 'params' in params else params
  t = lambda a: torch.from_numpy(np.array(a, np.float32))

  def dense(layer, q):
    layer.weight.data, layer.bias.data = t(q['kernel']).T.contiguous(), t(q['bias'])

  enc, dec, prior = p['encoder'], p['decoder'], p['prior']['step']
  for i, conv in enumerate(model.encoder.convs):
    conv.weight.data = t(enc[f'Conv_{i}']['kernel']).permute(3, 2, 0, 1).contiguous()
    conv.bias.data = t(enc[f'Conv_{i}']['bias'])
  dense(model.encoder.mu, enc['mu'])
  dense(model.encoder.logvar, enc['logvar'])
  for i, layer in enumerate(model.decoder.hidden):
    dense(layer, dec[f'Dense_{i}'])
  dense(model.decoder.fc, dec[f'Dense_{len(model.decoder.hidden)}'])
  for i, conv in enumerate(model.decoder.convs):
    conv.weight.data = t(dec[f'ConvTranspose_{i}']['kernel']).permute(2, 3, 0, 1).contiguous()
    conv.bias.data = t(dec[f'ConvTranspose_{i}']['bias'])
  for i, cell in enumerate(model.prior.cells):
    q = prior[f'rnn_{i}']
    cell.weight_ih.data = t(q['i']['kernel']).T.contiguous()
    cell.bias_ih.data = t(q['i']['bias'])
    cell.weight_hh.data = t(q['h']['kernel']).T.contiguous()
  dense(model.prior.head, prior['head'])
