"""LSTM video autoencoders and future predictors (Srivastava, Mansimov and Salakhutdinov, 2015).

An encoder LSTM reads the input frames; its final state (every layer's (c, h)) is copied into
  * a decoder that reconstructs the input frames in reverse order (the autoencoder), and/or
  * a predictor that produces the frames that follow (the future predictor);
'composite' has both. A conditional decoder or predictor is fed the previous frame of its own
output sequence (the ground truth in training, its own output at test; zeros at the first
step); an unconditioned one has no input at all.

Frames reach the LSTMs as features: the flattened pixels ('flat', 64x64 = 4096 inputs, as in
the paper) or a conv encoder's output ('conv'). A readout turns the top LSTM's h into one
frame of logits: a Dense layer ('flat') or a Dense + transposed-conv decoder ('conv').

Speed: an LSTM layer's input projection does not depend on its recurrence, so with teacher
forcing every layer runs as one big matmul over all frames (`project`) followed by a time
loop that only multiplies h (`recurrence`, whose backward pass is written by hand), layer
after layer; the readout runs once on all frames. Only a conditional model at test time,
which feeds back its own output, runs everything inside the loop (`free_run`).
"""
import functools
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.conv import Conv, ConvTranspose

KINDS = ('flat', 'conv')
MODES = ('composite', 'future', 'autoencoder')
ACTIVATIONS = ('sigmoid', 'linear', 'tanh')
DTYPES = ('float32', 'bfloat16')
HE = nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')


def kernel_init(init_scale):
  """The paper's U(-s, s) when init_scale > 0, else Flax's default (LeCun normal)."""
  if init_scale > 0:
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
        key, shape, dtype, -init_scale, init_scale)
  return nn.linear.default_kernel_init


def activate(kind, logits):
  """The output activation: the frame the model emits, in the data range."""
  if kind == 'sigmoid':
    return jax.nn.sigmoid(logits)
  if kind == 'tanh':
    return jnp.tanh(logits)
  return logits


class LSTMLayer(nn.Module):
  """One LSTM layer split as input projection (hoistable) + recurrence (gate order i, f, g, o).

  has_input=False makes an unconditioned layer: no input weights, only h drives it.
  """
  features: int
  has_input: bool = True
  init_scale: float = 0.01
  forget_bias: float = 1.0
  dtype: Optional[jnp.dtype] = None

  def setup(self):
    n, init = self.features, kernel_init(self.init_scale)
    if self.has_input:
      self.wx = nn.Dense(4 * n, use_bias=False, kernel_init=init, dtype=self.dtype)
    bias = lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, dtype).at[n:2 * n].set(
        self.forget_bias)
    self.wh = nn.Dense(4 * n, kernel_init=init, bias_init=bias, dtype=self.dtype)

  def project(self, x):
    """Input contribution to the gates, for any leading shape."""
    return self.wx(x)

  def recur(self, carry, gx=None):
    """One step from (c, h) and the projected input gx (None: unconditioned)."""
    c, h = carry
    z = self.wh(h)
    if gx is not None:
      z = z + gx
    c, h, _ = _gates(z, c)
    return (c, h), h

  def __call__(self, carry, x=None):
    return self.recur(carry, self.project(x) if self.has_input else None)


class ConvEncoder(nn.Module):
  """Frames (..., H, W) -> features (..., H/8 * W/8 * channels[-1]): conv k4 s2 p1 + ReLU."""
  channels: Sequence[int]
  conv_impl: str = 'auto'
  dtype: Optional[jnp.dtype] = None

  @nn.compact
  def __call__(self, frames):
    lead = frames.shape[:-2]
    x = frames.reshape((-1,) + frames.shape[-2:] + (1,))
    for c in self.channels:
      x = nn.relu(Conv(c, (4, 4), (2, 2), padding=1, impl=self.conv_impl, kernel_init=HE,
                       dtype=self.dtype)(x))
    return x.reshape(lead + (-1,))


class ConvReadout(nn.Module):
  """h -> frame logits (..., H, W): Dense to an (H/2^k, W/2^k, c) map, transposed convs up."""
  channels: Sequence[int]     # the encoder's channels; used in reverse
  frame_size: int
  conv_impl: str = 'auto'
  dtype: Optional[jnp.dtype] = None

  @nn.compact
  def __call__(self, h):
    lead = h.shape[:-1]
    side = self.frame_size // 2 ** len(self.channels)
    chans = list(self.channels[::-1])
    x = nn.relu(nn.Dense(side * side * chans[0], kernel_init=HE, dtype=self.dtype)(h))
    x = x.reshape((-1, side, side, chans[0]))
    for c in chans[1:] + [1]:
      x = ConvTranspose(c, (4, 4), (2, 2), padding=1, impl=self.conv_impl,
                        kernel_init=HE if c > 1 else nn.linear.default_kernel_init,
                        dtype=self.dtype)(x)
      if c > 1:
        x = nn.relu(x)
    return x.reshape(lead + (self.frame_size, self.frame_size))


class VideoLSTM(nn.Module):
  """The layers; `forward` and `free_run` below run them as pure functions of the params."""
  kind: str = 'flat'
  mode: str = 'composite'
  conditional: bool = True
  layers: int = 1
  hidden: int = 2048
  frame_size: int = 64
  conv_channels: Sequence[int] = (32, 64, 64)
  init_scale: float = 0.01
  forget_bias: float = 1.0
  conv_impl: str = 'auto'
  dtype: Optional[jnp.dtype] = None

  def setup(self):
    lstm = functools.partial(LSTMLayer, self.hidden, init_scale=self.init_scale,
                             forget_bias=self.forget_bias, dtype=self.dtype)
    if self.kind == 'conv':
      self.frame_encoder = ConvEncoder(self.conv_channels, self.conv_impl, self.dtype)
      readout = lambda: ConvReadout(self.conv_channels, self.frame_size, self.conv_impl,
                                    self.dtype)
    else:
      readout = lambda: nn.Dense(self.frame_size ** 2, kernel_init=kernel_init(self.init_scale),
                                 dtype=self.dtype)
    self.enc = [lstm() for _ in range(self.layers)]
    stacks, readouts = {}, {}
    for branch in self.branches:
      stacks[branch] = [lstm(has_input=self.conditional or l > 0) for l in range(self.layers)]
      readouts[branch] = readout()
    self.stacks, self.readouts = stacks, readouts

  @property
  def branches(self):
    return {'composite': ('recon', 'future'), 'future': ('future',),
            'autoencoder': ('recon',)}[self.mode]

  def features(self, frames):
    """Frames (..., H, W) -> LSTM inputs (..., F)."""
    if self.kind == 'conv':
      return self.frame_encoder(frames)
    return frames.reshape(frames.shape[:-2] + (-1,)).astype(self.dtype or frames.dtype)

  def layer(self, branch, l):
    return self.enc[l] if branch == 'enc' else self.stacks[branch][l]

  def project(self, branch, l, x):
    return self.layer(branch, l).project(x)

  def recur(self, branch, l, carry, gx=None):
    return self.layer(branch, l).recur(carry, gx)

  def readout(self, branch, h):
    """Top-layer h (..., n) -> frame logits (..., H, W), float32."""
    out = self.readouts[branch](h).astype(jnp.float32)
    return out.reshape(h.shape[:-1] + (self.frame_size, self.frame_size))

  def __call__(self, frames):
    """Creates every parameter: one step of each layer on frames (B, H, W)."""
    b = frames.shape[0]
    zero = jnp.zeros((b, self.hidden), jnp.float32)
    x = self.features(frames)
    for branch in ('enc',) + tuple(self.branches):
      h = x
      for l in range(self.layers):
        lyr = self.layer(branch, l)
        _, h = lyr((zero, zero), h if lyr.has_input else None)
      if branch != 'enc':
        self.readout(branch, h)
    return x


def _time_major(a):
  return jnp.swapaxes(a, 0, 1)


def _gates(z, c):
  """LSTM update from pre-activations z (..., 4n) and cell c: (c', h', the activations)."""
  i, f, g, o = jnp.split(z.astype(jnp.float32), 4, axis=-1)
  i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
  c = f * c + i * g
  tc = jnp.tanh(c)
  return c, o * tc, (i, f, g, o, tc)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def recurrence(kernel, bias, gx, carry, dtype=jnp.float32):
  """An LSTM layer's time loop: final (c, h) and hs (T, B, n), given projected inputs gx (T, B, 4n).

  The same numbers as scanning LSTMLayer.recur (matmuls in `dtype`, gates in float32). The
  backward pass is written by hand: autodiff of a scan accumulates the kernel gradient as one
  rank-B outer product per step (a full n x 4n read and write each time); here the per-step
  gate gradients are stacked and the kernel gradient is one (n, T*B) @ (T*B, 4n) matmul.
  """
  return _recurrence_fwd(kernel, bias, gx, carry, dtype)[0]


def _recurrence_fwd(kernel, bias, gx, carry, dtype):
  w, b = kernel.astype(dtype), bias.astype(dtype)

  def step(carry, g):
    c, h = carry
    z = (jnp.dot(h.astype(dtype), w) + b).astype(jnp.float32) + g
    c2, h2, acts = _gates(z, c)
    return (c2, h2), (h2, (h, c) + acts)

  final, (hs, res) = jax.lax.scan(step, carry, gx.astype(jnp.float32))
  return (final, hs), (kernel, res)


def _recurrence_bwd(dtype, saved, cot):
  kernel, (h_prev, c_prev, i, f, g, o, tc) = saved
  (dc, dh), dhs = cot
  w_t = kernel.astype(dtype).T

  def step(carry, xs):
    dc, dh = carry
    dh_out, c_prev, i, f, g, o, tc = xs
    dh = dh + dh_out
    dc = dc + dh * o * (1 - tc * tc)
    dz = jnp.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
                          dh * tc * o * (1 - o)], axis=-1)
    dh_prev = jnp.dot(dz.astype(dtype), w_t, preferred_element_type=jnp.float32)
    return (dc * f, dh_prev), dz

  (dc0, dh0), dz = jax.lax.scan(step, (dc, dh), (dhs, c_prev, i, f, g, o, tc), reverse=True)
  t, b, n4 = dz.shape
  flat = lambda a: a.reshape(t * b, a.shape[-1]).astype(dtype)
  dkernel = jnp.dot(flat(h_prev).T, flat(dz), preferred_element_type=jnp.float32)
  return dkernel.astype(kernel.dtype), dz.sum((0, 1)), dz, (dc0, dh0)


recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def layer_name(branch, l):
  return f'enc_{l}' if branch == 'enc' else f'stacks_{branch}_{l}'


def run_stack(model, params, branch, x, carries, length):
  """Teacher-forced: every layer of `branch` over a whole sequence, one layer after another.

  x: features (B, T, F) of the bottom layer's input, or None (unconditioned, `length` steps);
  carries: the initial (c, h) per layer. Each layer's input projection is one matmul over all
  steps; only the recurrence runs step by step. Returns (final carries, top h (B, T, n)).
  """
  finals = []
  batch = carries[0][0].shape[0]
  for l, carry in enumerate(carries):
    if x is None:
      gx = jnp.zeros((length, batch, 4 * model.hidden), jnp.float32)
    else:
      gx = _time_major(model.apply(params, branch, l, x, method=VideoLSTM.project))
    wh = params['params'][layer_name(branch, l)]['wh']
    carry, hs = recurrence(wh['kernel'], wh['bias'], gx, carry, model.dtype or jnp.float32)
    finals.append(carry)
    x = _time_major(hs)
  return finals, x


def zero_carries(model, batch):
  zero = jnp.zeros((batch, model.hidden), jnp.float32)
  return [(zero, zero)] * model.layers


def encode(model, params, frames):
  """The encoder's final (c, h) per layer after reading frames (B, T, H, W)."""
  x = model.apply(params, frames, method=VideoLSTM.features)
  carries, _ = run_stack(model, params, 'enc', x, zero_carries(model, frames.shape[0]),
                         frames.shape[1])
  return carries


def shift_in(targets):
  """The conditioning inputs of a conditional branch: zeros, then its targets but the last."""
  return jnp.concatenate([jnp.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)


def decode(model, params, branch, carries, targets):
  """Teacher-forced logits (B, T, H, W) of a branch whose target frames are `targets`."""
  x = None
  if model.conditional:
    x = model.apply(params, shift_in(targets), method=VideoLSTM.features)
  _, hs = run_stack(model, params, branch, x, carries, targets.shape[1])
  return model.apply(params, branch, hs, method=VideoLSTM.readout)


def free_run(model, params, branch, carries, length, activation, frame_shape):
  """Logits (B, length, H, W) with the branch fed its own previous output (zeros first).

  For an unconditioned model this equals `decode` (there is nothing to feed back).
  """
  if not model.conditional:
    _, hs = run_stack(model, params, branch, None, carries, length)
    return model.apply(params, branch, hs, method=VideoLSTM.readout)

  def step(state, _):
    carries, prev = state
    x = model.apply(params, prev, method=VideoLSTM.features)
    new = []
    for l, carry in enumerate(carries):
      gx = model.apply(params, branch, l, x, method=VideoLSTM.project)
      carry, x = model.apply(params, branch, l, carry, gx, method=VideoLSTM.recur)
      new.append(carry)
    logits = model.apply(params, branch, x, method=VideoLSTM.readout)
    return (new, activate(activation, logits)), logits

  batch = carries[0][0].shape[0]
  prev = jnp.zeros((batch,) + tuple(frame_shape), jnp.float32)
  _, logits = jax.lax.scan(step, (list(carries), prev), None, length=length)
  return _time_major(logits)


def targets(frames, num_input):
  """{'recon': the input frames in reverse order, 'future': the frames after them}."""
  return {'recon': frames[:, :num_input][:, ::-1], 'future': frames[:, num_input:]}


def forward(model, params, frames, num_input, activation='sigmoid', teacher=True):
  """Logits per branch: {'recon': (B, n_in, H, W), 'future': (B, T - n_in, H, W)} (those present).

  teacher=True feeds a conditional branch the true previous frame (training); False feeds it
  its own output (test).
  """
  carries = encode(model, params, frames[:, :num_input])
  tgt = targets(frames, num_input)
  out = {}
  for branch in model.branches:
    if teacher:
      out[branch] = decode(model, params, branch, carries, tgt[branch])
    else:
      out[branch] = free_run(model, params, branch, carries, tgt[branch].shape[1], activation,
                             frames.shape[2:])
  return out
