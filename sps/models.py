"""SPS networks: a VAE (conv for 32x32 frames, MLP for spectrograms) and a recurrent prior over z."""
import math
from typing import Sequence

import flax.linen as nn
import jax
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
  logvar_init: float = 0.0    # the logvar head's bias at init (negative: a low-noise start)
  leak: float = 0.0           # negative slope of the activations (0: ReLU, the paper's)

  @nn.compact
  def __call__(self, x):
    for c in self.channels:
      x = Conv(c, (4, 4), (2, 2), padding=1, impl=self.conv_impl, kernel_init=HE)(x)
      # A unit a ReLU has switched off for every frame gets no gradient again: early on,
      # while z only adds noise to the decoder's output, Adam pushes whole layers there and z
      # collapses for good. A small negative slope keeps every unit trainable.
      x = nn.leaky_relu(x, self.leak) if self.leak else nn.relu(x)
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.z_dim, name='mu')(x), logvar_head(self.z_dim, self.logvar_init)(x)


def logvar_head(z_dim, bias):
  """The logvar Dense, its bias starting at `bias`. At init mu varies across frames by only
  ~0.03 per dim, so with std exp(0/2) = 1 the decoder sees noise; a negative bias lets it see z."""
  return nn.Dense(z_dim, name='logvar', bias_init=nn.initializers.constant(bias))


class Decoder(nn.Module):
  """z (N, z_dim) -> frame logits (N, 32, 32, C): MLP, reshape 4x4x256, transposed convs."""
  hidden: Sequence[int] = (16, 32, 64)
  channels: Sequence[int] = (256, 128, 64)
  out_channels: int = 3
  base: int = 4
  conv_impl: str = 'auto'
  last_relu: bool = False     # ReLU after the last Dense (64 -> 4096); the release has none
  pixel_bias: bool = False    # a learned per-pixel bias on the output logits
  leak: float = 0.0           # negative slope of the hidden activations (0: ReLU, the paper's)

  @nn.compact
  def __call__(self, z):
    act = (lambda x: nn.leaky_relu(x, self.leak)) if self.leak else nn.relu
    h = z
    for w in self.hidden:
      h = act(nn.Dense(w, kernel_init=HE)(h))
    h = nn.Dense(self.base * self.base * self.channels[0], kernel_init=HE)(h)
    h = act(h) if self.last_relu else h
    h = h.reshape(h.shape[0], self.base, self.base, self.channels[0])
    outs = list(self.channels[1:]) + [self.out_channels]
    for i, c in enumerate(outs):
      h = ConvTranspose(c, (4, 4), (2, 2), padding=1, impl=self.conv_impl,
                        kernel_init=HE if i < len(outs) - 1 else nn.initializers.lecun_normal())(h)
      if i < len(outs) - 1:
        h = act(h)
    if self.pixel_bias:
      h = h + self.param('pixel_bias', nn.initializers.zeros, h.shape[1:])
    return h


class MLPEncoder(nn.Module):
  """Frames (N, ...) -> (mu, logvar): flatten, ReLU MLP. For the music spectrograms."""
  z_dim: int
  hidden: Sequence[int] = (512, 128)
  logvar_init: float = 0.0

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for w in self.hidden:
      x = nn.relu(nn.Dense(w, kernel_init=HE)(x))
    return nn.Dense(self.z_dim, name='mu')(x), logvar_head(self.z_dim, self.logvar_init)(x)


class MLPDecoder(nn.Module):
  """z (N, z_dim) -> outputs (N, *frame_shape): the encoder's MLP mirrored, linear output."""
  frame_shape: Sequence[int]
  hidden: Sequence[int] = (16, 32, 64, 128, 512)

  @nn.compact
  def __call__(self, z):
    h = z
    for w in self.hidden:
      h = nn.relu(nn.Dense(w, kernel_init=HE)(h))
    return nn.Dense(math.prod(self.frame_shape))(h).reshape((-1,) + tuple(self.frame_shape))


def near_identity(sign, noise):
  """Kernel init sign * I + N(0, noise^2): the prior starts as z[t+1] ~ sign * z[t] (the log's
  identity-plus-noise and negative-identity initialisations)."""
  def init(key, shape, dtype=jnp.float32):
    return sign * jnp.eye(*shape, dtype=dtype) + noise * jax.random.normal(key, shape, dtype)
  return init


class PriorStep(nn.Module):
  """One step of the prior: pick its input (teacher-forced or its own last guess), update, predict."""
  z_dim: int
  width: int
  depth: int
  cell: str
  dropout: float = 0.0      # on the hidden state fed back into each cell (not on z or outputs)
  init: str = 'default'     # 'default', 'identity' or 'negative_identity' (+ init_noise)
  init_noise: float = 0.01
  deterministic: bool = True

  @nn.compact
  def __call__(self, carry, inputs):
    hs, prev_pred = carry
    z_t, teacher = inputs
    z = x = jnp.where(teacher[:, None], z_t, prev_pred)
    new_hs = []
    for i, h in enumerate(hs):
      cell = (nn.GRUCell(self.width, name=f'gru_{i}') if self.cell == 'gru'
              else nn.SimpleCell(self.width, name=f'rnn_{i}'))
      h = nn.Dropout(self.dropout, deterministic=self.deterministic or not self.dropout)(h)
      h, x = cell(h, x)
      new_hs.append(h)
    if self.init == 'default':
      pred = nn.Dense(self.z_dim, name='head')(x)
    else:   # a learned skip z[t] -> z[t+1] starting at +-I, and a head starting near 0
      sign = 1.0 if self.init == 'identity' else -1.0
      pred = (nn.Dense(self.z_dim, use_bias=False, name='skip',
                       kernel_init=near_identity(sign, self.init_noise))(z) +
              nn.Dense(self.z_dim, name='head',
                       kernel_init=nn.initializers.normal(self.init_noise))(x))
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
  dropout: float = 0.0
  init: str = 'default'
  init_noise: float = 0.01

  @nn.compact
  def __call__(self, z_in, teacher, deterministic=True):
    batch = z_in.shape[0]
    hs = tuple(jnp.zeros((batch, self.width), z_in.dtype) for _ in range(self.depth))
    scan = nn.scan(PriorStep, variable_broadcast='params',
                   split_rngs={'params': False, 'dropout': True}, in_axes=1, out_axes=1)
    _, preds = scan(self.z_dim, self.width, self.depth, self.cell, self.dropout, self.init,
                    self.init_noise, deterministic, name='step')(
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
  prior_dropout: float = 0.0
  prior_init: str = 'default'
  prior_init_noise: float = 0.01
  conv_impl: str = 'auto'
  dec_last_relu: bool = False
  dec_pixel_bias: bool = False
  enc_leak: float = 0.0
  dec_leak: float = 0.0
  logvar_init: float = 0.0
  arch: str = 'conv'                       # 'conv' (32x32 images) or 'mlp' (any frame shape)
  frame_shape: Sequence[int] = (32, 32, 3)
  mlp_hidden: Sequence[int] = (512, 128)

  def setup(self):
    if self.arch == 'mlp':
      self.encoder = MLPEncoder(self.z_dim, self.mlp_hidden, self.logvar_init)
      self.decoder = MLPDecoder(self.frame_shape,
                                tuple(self.dec_hidden) + tuple(reversed(self.mlp_hidden)))
    else:
      self.encoder = Encoder(self.z_dim, self.enc_channels, self.conv_impl, self.logvar_init,
                             self.enc_leak)
      self.decoder = Decoder(self.dec_hidden, self.dec_channels, self.image_channels,
                             conv_impl=self.conv_impl, last_relu=self.dec_last_relu,
                             pixel_bias=self.dec_pixel_bias, leak=self.dec_leak)
    self.prior = Prior(self.z_dim, self.prior_width, self.prior_depth, self.prior_cell,
                       self.prior_dropout, self.prior_init, self.prior_init_noise)

  def encode(self, x):
    return self.encoder(x)

  def decode(self, z):
    return self.decoder(z)

  def predict(self, z_in, teacher, deterministic=True):
    return self.prior(z_in, teacher, deterministic)

  def __call__(self, x):
    """Touches every part once (for init): x (B, T, H, W, C)."""
    b, t = x.shape[:2]
    mu, _ = self.encode(x.reshape((b * t,) + x.shape[2:]))
    mu = mu.reshape(b, t, -1)
    return self.decode(mu[:, 0]), self.predict(mu, jnp.ones((b, t), bool))
