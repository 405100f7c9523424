"""A PyTorch twin of the vle models and their training step, for speed comparisons.

Same architecture, sizes, loss and optimiser as `vle.train.make_task`'s train step, which
trains the VLE and its baseline VAE together on the same batch:

  * VLE (`vle.models.VLE`): for each of `train_max` token steps, the residual x - recon is
    normalised per image (mean, population std + norm_eps); the encoder (k4 s2 convs with
    ReLU, a ConvLSTM after the first, a 1x1 conv to the token) gives the token; the decoder
    (a 3x3 conv, k4 s2 transposed convs, ReLU between) decodes it; recon += mask * (content
    * std + mean) for the images that still take tokens (step n < count). The mask is 1
    ('vanilla'), the sigmoid of a fourth decoder channel ('inherent'), or that of a small
    saliency head with its own ConvLSTM reading (normalised residual, content) ('saliency');
  * the ConvLSTM is the codebase's: one 3x3 conv of [x, h] giving the gates i, f, g, o, the
    forget bias (1) added in the forward pass, not in the initial bias; zero states for a
    fresh image;
  * VAE (`vle.models.VAE`): the same encoder without memory, 2 * token_channels out (mu,
    logvar), the reparameterised latent decoded to the normalised image; its widths are the
    VLE's times `vle.train.baseline_scale` (the parameter count matched);
  * loss (`vle.losses.loss_fn` on x = 2 * image - 1): (1 - e) * the MSE after each active
    token averaged over them + e * the MSE after each image's last token, plus the weighted
    mask losses (`vle.losses.mask_losses`) for the masked kinds, plus the VAE's pixel MSE +
    kl_weight * KL / (pixels * channels);
  * optimiser: Adam (AdamW with weight decay) on all parameters, each model's gradients
    clipped by their own global norm first (clip_grad_norm_), as the JAX step's
    optax.multi_transform of clip_by_global_norm + adam per model.

Written as a PyTorch user would (NCHW convolutions, eager, no torch.compile); the model can
also run in the channels_last memory format (`Twin.to(memory_format=torch.channels_last)`
and channels_last images), oneDNN's faster layout on CPU. Weights come from the JAX model
with `load_flax_params`: flax kernels are (kh, kw, in, out), torch's Conv2d weights (out, in,
kh, kw) and ConvTranspose2d weights (in, out, kh, kw), with the same kernel orientation
(common/conv.py's ConvTranspose has torch's semantics).
"""
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from vle import train as vle_train

KINDS = ('vanilla', 'saliency', 'inherent')
MASK_TERMS = ('binary', 'empty', 'previous', 'accumulated')
CONV = (3, 2, 0, 1)         # flax (kh, kw, in, out) -> torch Conv2d (out, in, kh, kw)
CONV_T = (2, 3, 0, 1)       # flax (kh, kw, in, out) -> torch ConvTranspose2d (in, out, kh, kw)


def normalise(r, eps):
  """r (B, C, H, W) -> ((r - mean) / std, mean, std), per image, std the population one."""
  std, mean = torch.std_mean(r, dim=(1, 2, 3), correction=0, keepdim=True)
  std = std + eps
  return (r - mean) / std, mean, std


def zeros_like_format(x, channels):
  """Zeros (B, channels, H, W) of x's spatial size, in x's memory format."""
  z = x.new_zeros(x.shape[0], channels, *x.shape[2:])
  if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
    z = z.contiguous(memory_format=torch.channels_last)
  return z


# ---------------------------------------------------------------------------
# Layers, as vle/models.py.

class ConvLSTM(nn.Module):
  """One 3x3 conv of [x, h] -> gates i, f, g, o; the forget bias is added in forward."""

  def __init__(self, in_channels, features, kernel=3, forget_bias=1.0):
    super().__init__()
    self.features, self.forget_bias = features, forget_bias
    self.gates = nn.Conv2d(in_channels + features, 4 * features, kernel, padding=kernel // 2)

  def forward(self, state, x):
    """state (c, h), or None for a fresh image; returns the new state and h."""
    if state is None:
      c = h = zeros_like_format(x, self.features)
    else:
      c, h = state
    i, f, g, o = self.gates(torch.cat([x, h], 1)).chunk(4, 1)
    c = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return (c, h), h


class Encoder(nn.Module):
  """k4 s2 convs with ReLU (a ConvLSTM after the first when memory > 0), a 1x1 conv out."""

  def __init__(self, in_channels, channels, out, memory=0):
    super().__init__()
    ins = (in_channels, memory or channels[0]) + tuple(channels[1:-1])   # h is the memory's
    self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, 2, 1) for a, b in zip(ins, channels))
    self.memory = ConvLSTM(channels[0], memory) if memory else None
    self.to_token = nn.Conv2d(channels[-1], out, 1)

  def forward(self, state, x):
    h = x
    for i, conv in enumerate(self.convs):
      h = F.relu(conv(h))
      if i == 0 and self.memory is not None:
        state, h = self.memory(state, h)
    return state, self.to_token(h)


class Decoder(nn.Module):
  """A 3x3 conv, then k4 s2 transposed convs (ReLU between), the last one to `out`."""

  def __init__(self, in_channels, channels, out):
    super().__init__()
    self.conv = nn.Conv2d(in_channels, channels[0], 3, padding=1)
    self.ups = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, 2, 1)
                             for a, b in zip(channels, channels[1:]))
    self.to_image = nn.ConvTranspose2d(channels[-1], out, 4, 2, 1)

  def forward(self, z):
    h = F.relu(self.conv(z))
    for up in self.ups:
      h = F.relu(up(h))
    return self.to_image(h)


class SaliencyHead(nn.Module):
  """A k4 s2 conv, its own ConvLSTM (optional), two residual blocks, a k4 s2 transposed conv
  to one channel of mask logits."""

  def __init__(self, in_channels, features=16, memory=True):
    super().__init__()
    f = features
    self.down = nn.Conv2d(in_channels, f, 4, 2, 1)
    self.memory = ConvLSTM(f, f) if memory else None
    self.blocks = nn.ModuleList(
        nn.ModuleList([nn.Conv2d(f, f, 3, padding=1), nn.Conv2d(f, f, 3, padding=1)])
        for _ in range(2))
    self.to_mask = nn.ConvTranspose2d(f, 1, 4, 2, 1)

  def forward(self, state, x):
    h = F.relu(self.down(x))
    if self.memory is not None:
      state, h = self.memory(state, h)
    for a, b in self.blocks:
      h = F.relu(h + b(F.relu(a(h))))
    return state, self.to_mask(h)


# ---------------------------------------------------------------------------
# The models.

class VLETwin(nn.Module):
  def __init__(self, kind='vanilla', channels=(32, 64, 64), memory=32, token_channels=4,
               decoder_channels=(64, 64, 32), saliency_features=16, saliency_memory=True,
               norm_eps=1e-2):
    super().__init__()
    if kind not in KINDS:
      raise ValueError(f'VLE kind must be one of {KINDS}, got {kind!r}')
    self.kind, self.norm_eps = kind, norm_eps
    self.encoder = Encoder(3, channels, token_channels, memory)
    self.decoder = Decoder(token_channels, decoder_channels, 4 if kind == 'inherent' else 3)
    self.saliency = (SaliencyHead(6, saliency_features, saliency_memory)
                     if kind == 'saliency' else None)

  def step(self, carry, x, active):
    """One token for images x (B, 3, H, W) in [-1, 1]; active (B,) bool.

    Returns the new carry (recon, encoder state, saliency state) and the mask (None for
    'vanilla', whose mask is 1)."""
    recon, enc_state, sal_state = carry
    rn, mean, std = normalise(x - recon, self.norm_eps)
    enc_state, token = self.encoder(enc_state, rn)
    out = self.decoder(token)
    content = out[:, :3]
    mask = None
    if self.kind == 'inherent':
      mask = torch.sigmoid(out[:, 3:])
    elif self.kind == 'saliency':
      sal_state, logits = self.saliency(sal_state, torch.cat([rn, content], 1))
      mask = torch.sigmoid(logits)
    contribution = content * std + mean
    if mask is not None:
      contribution = mask * contribution
    recon = recon + torch.where(active[:, None, None, None], contribution, 0.0)
    return (recon, enc_state, sal_state), mask

  def run_tokens(self, x, count, num_tokens):
    """(recons (N, B, 3, H, W): after each token, masks (N, B, 1, H, W) or None)."""
    carry = (torch.zeros_like(x), None, None)
    recons, masks = [], []
    for n in range(num_tokens):
      carry, mask = self.step(carry, x, n < count)
      recons.append(carry[0])
      masks.append(mask)
    return torch.stack(recons), (None if self.kind == 'vanilla' else torch.stack(masks))


class VAETwin(nn.Module):
  """The baseline: the encoder without memory (mu, logvar), the decoder; normalised images."""

  def __init__(self, channels=(32, 64, 64), token_channels=4, decoder_channels=(64, 64, 32),
               norm_eps=1e-2):
    super().__init__()
    self.norm_eps = norm_eps
    self.encoder = Encoder(3, channels, 2 * token_channels)
    self.decoder = Decoder(token_channels, decoder_channels, 3)

  def forward(self, x, eps=None, gen=None):
    """(reconstruction, mu, logvar) of x (B, 3, H, W); eps like mu, drawn from gen if None."""
    xn, mean, std = normalise(x, self.norm_eps)
    _, stats = self.encoder(None, xn)
    mu, logvar = stats.chunk(2, 1)
    if eps is None:
      eps = torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
    z = mu + torch.exp(0.5 * logvar) * eps
    return self.decoder(z) * std + mean, mu, logvar


class Twin(nn.Module):
  """The VLE, the baseline VAE (or None) and the loss settings of one config."""

  def __init__(self, vle, baseline=None, num_tokens=6, final_weight=0.5, mask_weights=None,
               mask_sharpness=5.0, kl_weight=1e-3):
    super().__init__()
    self.vle, self.baseline = vle, baseline
    self.num_tokens, self.final_weight = num_tokens, final_weight
    self.mask_weights = mask_weights or dict.fromkeys(MASK_TERMS, 0.01)
    self.mask_sharpness, self.kl_weight = mask_sharpness, kl_weight

  def parts(self):
    """The models that the JAX step clips separately, in its order."""
    return [m for m in (self.vle, self.baseline) if m is not None]


def from_config(config):
  """The twin of `vle.train.make_models(config)` with its loss settings."""
  m, l = config.model, config.loss
  vle = VLETwin(m.kind, tuple(m.channels), m.memory, m.token_channels,
                tuple(m.decoder_channels), m.saliency_features, m.saliency_memory, m.norm_eps)
  baseline = None
  if config.baseline.enabled:
    scale = vle_train.baseline_scale(config)   # the JAX code's own width, as make_vae's
    width = lambda cs: tuple(max(1, round(c * scale)) for c in cs)
    baseline = VAETwin(width(m.channels), m.token_channels, width(m.decoder_channels),
                       m.norm_eps)
  return Twin(vle, baseline, config.tokens.train_max, l.final_weight,
              {k: l[f'mask_{k}'] for k in MASK_TERMS}, l.mask_sharpness,
              config.baseline.kl_weight)


def num_params(model):
  return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------
# Losses, as vle/losses.py.

def masked_mean(values, weights):
  return (values * weights).sum() / weights.sum().clamp(min=1.0)


def reconstruction_loss(recons, x, count, final_weight):
  """recons (N, B, C, H, W) -> (loss, {'aux_mse', 'final_mse'})."""
  mse = (recons - x).square().mean((2, 3, 4))   # (N, B)
  active = (torch.arange(mse.shape[0], device=x.device)[:, None] < count).to(mse.dtype)
  aux = masked_mean(mse, active)
  final = mse.gather(0, (count - 1)[None]).mean()
  return (1.0 - final_weight) * aux + final_weight * final, {'aux_mse': aux, 'final_mse': final}


def mask_losses(masks, count, sharpness):
  """{binary, empty, previous, accumulated} of masks (N, B, 1, H, W), as vle.losses."""
  m = masks[:, :, 0]
  n = m.shape[0]
  steps = torch.arange(n, device=m.device)[:, None]
  active = (steps < count).to(m.dtype)
  later = active * (steps >= 1)
  pixel_mean = lambda a: a.mean((2, 3))
  prev = torch.cat([torch.zeros_like(m[:1]), m[:-1]])
  acc = torch.clamp(torch.cumsum(m, 0) - m, max=1.0)
  return {
      'binary': masked_mean(pixel_mean(m * (1 - m)), active),
      'empty': masked_mean(torch.exp(-sharpness * pixel_mean(m.square())), active),
      'previous': masked_mean(torch.exp(-sharpness * pixel_mean((m - prev).square())), later),
      'accumulated': masked_mean(torch.exp(-sharpness * pixel_mean((m - acc).square())), later),
  }


def loss_fn(twin, images, count, eps=None, gen=None):
  """(loss, metrics) as `vle.losses.loss_fn` on images (B, 3, H, W) in [0, 1] with count (B,)
  int64 tokens each; eps is the VAE's noise (like its mu), drawn from `gen` if None.

  loss is the VLE's loss plus the baseline's; metrics['loss'] the VLE's alone, as JAX's."""
  x = 2.0 * images - 1.0
  recons, masks = twin.vle.run_tokens(x, count, twin.num_tokens)
  loss, metrics = reconstruction_loss(recons, x, count, twin.final_weight)
  if masks is not None:
    terms = mask_losses(masks, count, twin.mask_sharpness)
    loss = loss + sum(twin.mask_weights[k] * v for k, v in terms.items())
    metrics.update({f'mask_{k}': v for k, v in terms.items()})
  # metrics['loss'] is the VLE's loss alone, as in the JAX step's metrics
  metrics = {'loss': loss, **metrics, 'tokens': count.to(x.dtype).mean()}
  if twin.baseline is not None:
    recon, mu, logvar = twin.baseline(x, eps, gen)
    mse = (recon - x).square().mean()
    kl = 0.5 * (logvar.exp() + mu.square() - 1.0 - logvar).sum((1, 2, 3)).mean() / x[0].numel()
    b_loss = mse + twin.kl_weight * kl
    loss = loss + b_loss   # separate parameters: each model gets its own gradient
    metrics.update({'baseline_loss': b_loss, 'baseline_mse': mse, 'baseline_kl': kl})
  return loss, metrics


def make_optimizer(twin, optim):
  """Adam (AdamW when weight_decay > 0) on every parameter; `optim` is config.optim."""
  if optim.weight_decay > 0:
    return torch.optim.AdamW(twin.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
  return torch.optim.Adam(twin.parameters(), lr=optim.lr)


def train_step(twin, opt, images, count, grad_clip, eps=None, gen=None):
  """One step: loss, backward, each model's gradients clipped by their global norm, Adam.

  Returns the detached `loss` metric, as the JAX step reports it: the VLE's loss (the
  baseline's is trained on too, but reported apart)."""
  opt.zero_grad(set_to_none=True)
  loss, metrics = loss_fn(twin, images, count, eps, gen)
  loss.backward()
  if grad_clip > 0:
    for part in twin.parts():
      nn.utils.clip_grad_norm_(part.parameters(), grad_clip)
  opt.step()
  return metrics['loss'].detach()


# ---------------------------------------------------------------------------
# Weights from the JAX model.

def named_pairs(twin, params):
  """[(torch parameter, flax array, permutation to torch's layout or None)] for every
  parameter; `params` is the JAX state's {'vle': ..., 'baseline': ...}."""
  pairs = []

  def conv(layer, q, perm=CONV):
    pairs.extend([(layer.weight, q['kernel'], perm), (layer.bias, q['bias'], None)])

  def lstm(cell, q):
    conv(cell.gates, q['gates'])

  def encoder(enc, q):
    for i, c in enumerate(enc.convs):
      conv(c, q[f'Conv_{i}'])
    if enc.memory is not None:
      lstm(enc.memory, q['memory'])
    conv(enc.to_token, q['to_token'])

  def decoder(dec, q):
    conv(dec.conv, q['Conv_0'])
    for i, up in enumerate(dec.ups):
      conv(up, q[f'ConvTranspose_{i}'], CONV_T)
    conv(dec.to_image, q['to_image'], CONV_T)

  p = params['vle']['params']
  encoder(twin.vle.encoder, p['encoder'])
  decoder(twin.vle.decoder, p['decoder'])
  if twin.vle.saliency is not None:
    s, q = twin.vle.saliency, p['saliency']
    conv(s.down, q['Conv_0'])
    if s.memory is not None:
      lstm(s.memory, q['memory'])
    for i, (a, b) in enumerate(s.blocks):
      conv(a, q[f'Conv_{1 + 2 * i}'])
      conv(b, q[f'Conv_{2 + 2 * i}'])
    conv(s.to_mask, q['to_mask'], CONV_T)
  if twin.baseline is not None:
    p = params['baseline']['params']
    encoder(twin.baseline.encoder, p['encoder'])
    decoder(twin.baseline.decoder, p['decoder'])
  return pairs


def torch_layout(a, perm):
  """A flax array as a float32 numpy array in torch's layout."""
  a = np.array(a, np.float32)   # a writable copy: torch.from_numpy warns on read-only arrays
  return np.ascontiguousarray(a.transpose(perm) if perm else a)


def load_flax_params(twin, params):
  """Copies the JAX state's parameters ({'vle': ..., 'baseline': ...}) into the twin."""
  with torch.no_grad():
    for tp, a, perm in named_pairs(twin, params):
      tp.copy_(torch.from_numpy(torch_layout(a, perm)))
