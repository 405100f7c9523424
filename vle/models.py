"""Variable-length embeddings: an image as a sequence of residual tokens.

Token step n (all models): r = x - recon, normalised per image (mean, std); token_n = Enc(r);
out = Dec(token_n); recon += mask * (out * std + mean). Each token is a small latent map
(token_channels at 1/8 resolution). A ConvLSTM right after the first encoder conv carries memory
across the token steps of one image.

  vanilla    mask = 1
  saliency   a small residual head with its own memory reads (normalised residual, decoded
             token) and emits the mask (sigmoid)
  inherent   the decoder emits the mask as a fourth channel

`run_tokens` scans `VLE.step` over a static maximum number of tokens; an image's steps past its
sampled token count leave its reconstruction unchanged. `VAE` is the baseline: a plain conv VAE
trained on single images and applied to residuals the same way (`VAE.step`).
"""
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from common.conv import Conv, ConvTranspose

KINDS = ('vanilla', 'saliency', 'inherent')


def normalise(r, eps):
  """r (B, H, W, C) -> (r - mean) / std per image, with (mean, std) of shape (B, 1, 1, 1)."""
  mean = r.mean(axis=(1, 2, 3), keepdims=True)
  std = jnp.sqrt(jnp.square(r - mean).mean(axis=(1, 2, 3), keepdims=True)) + eps
  return (r - mean) / std, (mean, std)


class ConvLSTM(nn.Module):
  """A convolutional LSTM cell: one k x k conv of [input, h] gives the four gates."""
  features: int
  kernel: int = 3
  forget_bias: float = 1.0
  conv_impl: Optional[str] = None

  @nn.compact
  def __call__(self, carry, x):
    c, h = carry
    gates = Conv(4 * self.features, (self.kernel, self.kernel), impl=self.conv_impl,
                 name='gates')(jnp.concatenate([x, h], -1))
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = nn.sigmoid(f + self.forget_bias) * c + nn.sigmoid(i) * jnp.tanh(g)
    h = nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h


def zero_state(batch, size, features):
  """The ConvLSTM state (c, h) of a fresh image at `size` x `size`, or () without memory."""
  if not features:
    return ()
  z = jnp.zeros((batch, size, size, features), jnp.float32)
  return (z, z)


class Encoder(nn.Module):
  """(B, H, W, C) -> (B, H/2^k, W/2^k, out): k4 s2 convs; a ConvLSTM after the first one."""
  channels: Sequence[int]
  out: int
  memory: int = 0
  conv_impl: Optional[str] = None

  @nn.compact
  def __call__(self, state, x):
    h = x
    for i, c in enumerate(self.channels):
      h = nn.relu(Conv(c, (4, 4), (2, 2), padding=1, impl=self.conv_impl)(h))
      if i == 0 and self.memory:
        state, h = ConvLSTM(self.memory, conv_impl=self.conv_impl, name='memory')(state, h)
    return state, Conv(self.out, (1, 1), impl=self.conv_impl, name='to_token')(h)


class Decoder(nn.Module):
  """(B, h, w, token) -> (B, h*2^k, w*2^k, out): a 3x3 conv, then k4 s2 transposed convs."""
  channels: Sequence[int]
  out: int
  conv_impl: Optional[str] = None

  @nn.compact
  def __call__(self, z):
    h = nn.relu(Conv(self.channels[0], (3, 3), impl=self.conv_impl)(z))
    for c in self.channels[1:]:
      h = nn.relu(ConvTranspose(c, (4, 4), (2, 2), padding=1, impl=self.conv_impl)(h))
    return ConvTranspose(self.out, (4, 4), (2, 2), padding=1, impl=self.conv_impl,
                         name='to_image')(h)


class SaliencyHead(nn.Module):
  """(normalised residual, decoded token) -> mask logits (B, H, W, 1): a k4 s2 conv, its own
  ConvLSTM memory (optional), two residual blocks, a k4 s2 transposed conv. Kept small: the
  log found that a large head collapses to striped or all-or-nothing masks."""
  features: int = 16
  memory: bool = True
  conv_impl: Optional[str] = None

  @nn.compact
  def __call__(self, state, x):
    f = self.features
    h = nn.relu(Conv(f, (4, 4), (2, 2), padding=1, impl=self.conv_impl)(x))
    if self.memory:
      state, h = ConvLSTM(f, conv_impl=self.conv_impl, name='memory')(state, h)
    for _ in range(2):
      y = nn.relu(Conv(f, (3, 3), impl=self.conv_impl)(h))
      h = nn.relu(h + Conv(f, (3, 3), impl=self.conv_impl)(y))
    return state, ConvTranspose(1, (4, 4), (2, 2), padding=1, impl=self.conv_impl,
                                name='to_mask')(h)


class VLE(nn.Module):
  kind: str = 'vanilla'
  channels: Sequence[int] = (32, 64, 64)
  memory: int = 32
  token_channels: int = 4
  decoder_channels: Sequence[int] = (64, 64, 32)
  saliency_features: int = 16
  saliency_memory: bool = True
  norm_eps: float = 1e-2
  conv_impl: Optional[str] = None

  def setup(self):
    if self.kind not in KINDS:
      raise ValueError(f'VLE kind must be one of {KINDS}, got {self.kind!r}')
    self.encoder = Encoder(self.channels, self.token_channels, self.memory, self.conv_impl)
    self.decoder = Decoder(self.decoder_channels, 4 if self.kind == 'inherent' else 3,
                           self.conv_impl)
    if self.kind == 'saliency':
      self.saliency = SaliencyHead(self.saliency_features, self.saliency_memory, self.conv_impl)

  @property
  def downsample(self):
    return 2 ** len(self.channels)

  def initial_carry(self, batch, size):
    """(recon, encoder memory, saliency memory) of fresh images: a zero reconstruction."""
    sal = (zero_state(batch, size // 2, self.saliency_features)
           if self.kind == 'saliency' and self.saliency_memory else ())
    return (jnp.zeros((batch, size, size, 3), jnp.float32),
            zero_state(batch, size // 2, self.memory), sal)

  def step(self, carry, x, active):
    """One token for images x (B, H, W, 3) in [-1, 1]; `active` (B,) bool says which images
    still take tokens. Returns the new carry and this step's outputs."""
    recon, enc_state, sal_state = carry
    rn, (mean, std) = normalise(x - recon, self.norm_eps)
    enc_state, token = self.encoder(enc_state, rn)
    out = self.decoder(token)
    content = out[..., :3]
    if self.kind == 'vanilla':
      mask = jnp.ones_like(content[..., :1])
    elif self.kind == 'inherent':
      mask = nn.sigmoid(out[..., 3:])
    else:
      sal_state, logits = self.saliency(sal_state, jnp.concatenate([rn, content], -1))
      mask = nn.sigmoid(logits)
    contribution = jnp.where(active[:, None, None, None], mask * (content * std + mean), 0.0)
    recon = recon + contribution
    return (recon, enc_state, sal_state), {
        'token': token, 'mask': mask, 'contribution': contribution, 'recon': recon}

  def __call__(self, x, active):   # one step from a fresh carry: for init
    return self.step(self.initial_carry(x.shape[0], x.shape[1]), x, active)


class VAE(nn.Module):
  """The baseline: a conv VAE with the VLE's token shape (no memory), on normalised images."""
  channels: Sequence[int] = (32, 64, 64)
  token_channels: int = 4
  decoder_channels: Sequence[int] = (64, 64, 32)
  norm_eps: float = 1e-2
  conv_impl: Optional[str] = None

  def setup(self):
    self.encoder = Encoder(self.channels, 2 * self.token_channels, 0, self.conv_impl)
    self.decoder = Decoder(self.decoder_channels, 3, self.conv_impl)

  def encode(self, xn):
    _, stats = self.encoder((), xn)
    mu, logvar = jnp.split(stats, 2, axis=-1)
    return mu, logvar

  def __call__(self, x, key):
    """A training pass on x (B, H, W, 3) in [-1, 1]: (reconstruction, mu, logvar)."""
    xn, (mean, std) = normalise(x, self.norm_eps)
    mu, logvar = self.encode(xn)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
    return self.decoder(z) * std + mean, mu, logvar

  def initial_carry(self, batch, size):
    return (jnp.zeros((batch, size, size, 3), jnp.float32), (), ())

  def step(self, carry, x, active):
    """The VAE applied to the current residual (posterior mean), added to the reconstruction."""
    recon = carry[0]
    rn, (mean, std) = normalise(x - recon, self.norm_eps)
    mu, _ = self.encode(rn)
    content = self.decoder(mu)
    contribution = jnp.where(active[:, None, None, None], content * std + mean, 0.0)
    recon = recon + contribution
    return (recon, (), ()), {'token': mu, 'mask': jnp.ones_like(content[..., :1]),
                             'contribution': contribution, 'recon': recon}


def run_tokens(model, params, x, count, num_tokens):
  """Encodes images x (B, H, W, 3) in [-1, 1] with `count` (B,) tokens each, scanning
  `num_tokens` (static) steps. Returns the stacked step outputs, each (num_tokens, B, ...);
  outputs[n]['recon'] is the reconstruction after n + 1 tokens (the final one for n >= count)."""
  carry = model.initial_carry(x.shape[0], x.shape[1])

  def body(carry, n):
    return model.apply(params, carry, x, n < count, method=model.step)

  _, outs = lax.scan(body, carry, jnp.arange(num_tokens))
  return outs


def kl_divergence(mu, logvar):
  """KL(N(mu, exp(logvar)) || N(0, 1)) summed over all but the batch axis."""
  kl = 0.5 * (jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar)
  return kl.reshape(kl.shape[0], -1).sum(-1)
