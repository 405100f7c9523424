"""SPS networks: a conv VAE for 32x32 frames and a recurrent prior over its latent z."""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from common.conv import Conv, ConvTranspose

# He init for layers followed by ReLU. With flax's default (LeCun) the signal from z shrinks
# through the narrow decoder MLP and training sits on the "mean image" plateau (the ball is
# ignored) for hundreds of steps; with He init it leaves the plateau several times sooner.
HE = nn.initializers.he_normal()


class Encoder(nn.Module):
  """Frames (N, 32, 32, C) -> (mu, logvar), each (N, z_dim). Conv k4 s2 p1 halves H and W."""
  z_dim: int
  channels: Sequence[int] = (64, 128, 256)
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x):
    for c in self.channels:
      x = nn.relu(Conv(c, (4, 4), (2, 2), padding=1, impl=self.conv_impl, kernel_init=HE)(x))
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.z_dim, name='mu')(x), nn.Dense(self.z_dim, name='logvar')(x)


class Decoder(nn.Module):
  """z (N, z_dim) -> frame logits (N, 32, 32, C): MLP, reshape 4x4x256, transposed convs."""
  hidden: Sequence[int] = (16, 32, 64)
  channels: Sequence[int] = (256, 128, 64)
  out_channels: int = 3
  base: int = 4
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, z):
    h = z
    for w in self.hidden:
      h = nn.relu(nn.Dense(w, kernel_init=HE)(h))
    h = nn.relu(nn.Dense(self.base * self.base * self.channels[0], kernel_init=HE)(h))
    h = h.reshape(h.shape[0], self.base, self.base, self.channels[0])
    outs = list(self.channels[1:]) + [self.out_channels]
    for i, c in enumerate(outs):
      h = ConvTranspose(c, (4, 4), (2, 2), padding=1, impl=self.conv_impl,
                        kernel_init=HE if i < len(outs) - 1 else nn.initializers.lecun_normal())(h)
      if i < len(outs) - 1:
        h = nn.relu(h)
    return h


class PriorStep(nn.Module):
  """One step of the prior: pick its input (teacher-forced or its own last guess), update, predict."""
  z_dim: int
  width: int
  depth: int
  cell: str

  @nn.compact
  def __call__(self, carry, inputs):
    hs, prev_pred = carry
    z_t, teacher = inputs
    x = jnp.where(teacher[:, None], z_t, prev_pred)
    new_hs = []
    for i, h in enumerate(hs):
      cell = (nn.GRUCell(self.width, name=f'gru_{i}') if self.cell == 'gru'
              else nn.SimpleCell(self.width, name=f'rnn_{i}'))
      h, x = cell(h, x)
      new_hs.append(h)
    pred = nn.Dense(self.z_dim, name='head')(x)
    return (tuple(new_hs), pred), pred


class Prior(nn.Module):
  """Unrolls the prior over time with lax.scan: z_in (B, S, d) -> predictions of z[1..S] (B, S, d).

  teacher (B, S) says, per step, whether the input is z_in[t] or the previous prediction
  (scheduled sampling).
  """
  z_dim: int
  width: int = 32
  depth: int = 1
  cell: str = 'rnn'

  @nn.compact
  def __call__(self, z_in, teacher):
    batch = z_in.shape[0]
    hs = tuple(jnp.zeros((batch, self.width), z_in.dtype) for _ in range(self.depth))
    scan = nn.scan(PriorStep, variable_broadcast='params', split_rngs={'params': False},
                   in_axes=1, out_axes=1)
    _, preds = scan(self.z_dim, self.width, self.depth, self.cell, name='step')(
        (hs, jnp.zeros_like(z_in[:, 0])), (z_in, teacher))
    return preds


class SPS(nn.Module):
  """The VAE and the prior; use `apply(..., method=...)` for each part."""
  z_dim: int
  enc_channels: Sequence[int] = (64, 128, 256)
  dec_hidden: Sequence[int] = (16, 32, 64)
  dec_channels: Sequence[int] = (256, 128, 64)
  image_channels: int = 3
  prior_width: int = 32
  prior_depth: int = 1
  prior_cell: str = 'rnn'
  conv_impl: str = 'auto'

  def setup(self):
    self.encoder = Encoder(self.z_dim, self.enc_channels, self.conv_impl)
    self.decoder = Decoder(self.dec_hidden, self.dec_channels, self.image_channels,
                           conv_impl=self.conv_impl)
    self.prior = Prior(self.z_dim, self.prior_width, self.prior_depth, self.prior_cell)

  def encode(self, x):
    return self.encoder(x)

  def decode(self, z):
    return self.decoder(z)

  def predict(self, z_in, teacher):
    return self.prior(z_in, teacher)

  def __call__(self, x):
    """Touches every part once (for init): x (B, T, H, W, C)."""
    b, t = x.shape[:2]
    mu, _ = self.encode(x.reshape((b * t,) + x.shape[2:]))
    mu = mu.reshape(b, t, -1)
    return self.decode(mu[:, 0]), self.predict(mu, jnp.ones((b, t), bool))
