"""The variational RNN (Chung et al. 2015), its VRNN-I variant and the RNN baseline without latents.

Per step t, with h = h_{t-1}:
  prior    p(z_t | h)          = N(mu_p, sigma_p)        (VRNN-I: N(0, I))
  encoder  q(z_t | x_t, h)     = N(mu_q, sigma_q)
  decoder  p(x_t | z_t, h)     = the output distribution (see distributions.py)
  recurrence h_t = RNN([phi_x(x_t), phi_z(z_t)], h)
The module holds the layers; `unroll` and `generate` below run them under lax.scan as pure
functions of the parameters. Only the encoder, phi_z and the RNN feed the recurrence, so
only they run inside the scan: phi_x, the prior, the decoder and the output head are applied
to whole sequences at once (large matmuls instead of T small ones).
"""
import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vrnn import distributions as dist

OUTPUTS = ('gmm', 'gauss', 'bernoulli')
CELLS = ('lstm', 'gru')
PRIORS = ('learned', 'standard')


class MLP(nn.Module):
  widths: Sequence[int]

  @nn.compact
  def __call__(self, x):
    for w in self.widths:
      x = nn.relu(nn.Dense(w)(x))
    return x


class GaussianHead(nn.Module):
  """MLP -> (mu, sigma) with sigma = softplus(.) + floor."""
  widths: Sequence[int]
  features: int
  min_scale: float

  @nn.compact
  def __call__(self, x):
    x = MLP(self.widths)(x)
    mu = nn.Dense(self.features, name='mu')(x)
    sigma = dist.positive(nn.Dense(self.features, name='sigma')(x), self.min_scale)
    return mu, sigma


class LSTM(nn.Module):
  """An LSTM cell with one gate matmul on [x, h] (gate order i, f, g, o as in torch.nn.LSTMCell).

  The forget-gate bias starts at 1 so the cell remembers from the first step.
  """
  features: int

  @nn.compact
  def __call__(self, carry, x):
    c, h = carry
    n = self.features
    bias_init = lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, dtype).at[n:2 * n].set(1.0)
    gates = nn.Dense(4 * n, bias_init=bias_init)(jnp.concatenate([x, h], -1))
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
    h = nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h


class OutputHead(nn.Module):
  """Parameters of p(x_t | .) from features: a dict that distributions.log_prob/sample take."""
  kind: str
  x_dim: int
  num_mixtures: int
  pen_bit: bool
  min_scale: float

  @nn.compact
  def __call__(self, x):
    if self.kind == 'bernoulli':
      return {'logits': nn.Dense(self.x_dim, name='logits')(x)}
    d = self.x_dim - int(self.pen_bit)
    p = {}
    if self.kind == 'gauss':
      p['mu'] = nn.Dense(d, name='mu')(x)
      p['sigma'] = dist.positive(nn.Dense(d, name='sigma')(x), self.min_scale)
    else:
      k = self.num_mixtures
      shape = x.shape[:-1] + (k, d)
      p['logits'] = nn.Dense(k, name='logits')(x)
      p['mu'] = nn.Dense(d * k, name='mu')(x).reshape(shape)
      p['sigma'] = dist.positive(nn.Dense(d * k, name='sigma')(x), self.min_scale).reshape(shape)
      if d == 2:   # pen offsets: each component correlates dx and dy, as in the paper
        p['rho'] = dist.MAX_RHO * jnp.tanh(nn.Dense(k, name='rho')(x))
    if self.pen_bit:
      p['pen_logit'] = nn.Dense(1, name='pen_logit')(x)
    return p


class VRNN(nn.Module):
  x_dim: int
  z_dim: int = 16
  h_dim: int = 256
  phi_x_dim: int = 64
  phi_z_dim: int = 64
  hidden_dim: int = 256      # width of the prior, encoder and decoder MLPs
  layers: int = 1            # hidden layers in each MLP
  cell: str = 'lstm'
  prior: str = 'learned'     # 'learned' p(z_t | h_{t-1}) or 'standard' N(0, I) (VRNN-I)
  latent: bool = True        # False: the RNN baseline, p(x_t | h_{t-1}) with no z
  output: str = 'gmm'
  num_mixtures: int = 20
  pen_bit: bool = True
  min_scale: float = 1e-3

  def setup(self):
    hidden = [self.hidden_dim] * self.layers
    self.phi_x = MLP([self.phi_x_dim] * self.layers)
    if self.latent:
      self.phi_z = MLP([self.phi_z_dim] * self.layers)
      self.encoder = GaussianHead(hidden, self.z_dim, self.min_scale)
      if self.prior == 'learned':
        self.prior_net = GaussianHead(hidden, self.z_dim, self.min_scale)
    self.decoder = MLP(hidden)
    self.head = OutputHead(self.output, self.x_dim, self.num_mixtures, self.pen_bit,
                           self.min_scale)
    self.rnn = LSTM(self.h_dim) if self.cell == 'lstm' else nn.GRUCell(self.h_dim)

  def initial_carry(self, batch):
    h = jnp.zeros((batch, self.h_dim), jnp.float32)
    return (h, h) if self.cell == 'lstm' else h

  def hidden(self, carry):
    return carry[1] if self.cell == 'lstm' else carry

  def features(self, x):
    return self.phi_x(x)

  def prior_dist(self, h):
    if self.prior == 'learned':
      return self.prior_net(h)
    zeros = jnp.zeros(h.shape[:-1] + (self.z_dim,), h.dtype)
    return zeros, jnp.ones_like(zeros)

  def step(self, carry, fx, eps):
    """The recurrent part of one step, given phi_x(x_t) and noise eps_t.

    Only what feeds the recurrence runs here (encoder, z, phi_z, RNN); the prior and the
    decoder depend on h_{t-1} and z_t alone, so `emit` applies them to whole sequences.
    """
    h = self.hidden(carry)
    if not self.latent:
      carry, _ = self.rnn(carry, fx)
      return carry, {'h': h}
    mu_q, sigma_q = self.encoder(jnp.concatenate([fx, h], -1))
    z = mu_q + sigma_q * eps
    fz = self.phi_z(z)
    carry, _ = self.rnn(carry, jnp.concatenate([fx, fz], -1))
    return carry, {'h': h, 'z': z, 'fz': fz, 'q': (mu_q, sigma_q)}

  def emit(self, h, fz=None):
    """The output distribution's parameters p(x_t | z_t, h_{t-1}) and the prior p(z_t | h_{t-1})."""
    if not self.latent:
      return {'out': self.head(self.decoder(h))}
    out = self.head(self.decoder(jnp.concatenate([fz, h], -1)))
    return {'out': out, 'p': self.prior_dist(h)}

  def generate_step(self, carry, key, temperature=1.0):
    """One step of ancestral sampling: z_t from the prior, x_t from the decoder."""
    h = self.hidden(carry)
    k_z, k_x = jax.random.split(key)
    fz = None
    if self.latent:
      mu_p, sigma_p = self.prior_dist(h)
      z = mu_p + temperature * sigma_p * jax.random.normal(k_z, mu_p.shape)
      fz = self.phi_z(z)
    x = dist.sample(self.output, k_x, self.emit(h, fz)['out'])
    fx = self.phi_x(x)
    carry, _ = self.rnn(carry, jnp.concatenate([fx, fz], -1) if self.latent else fx)
    return carry, x

  def __call__(self, x):
    """Creates every parameter: one step on x (B, x_dim)."""
    eps = jnp.zeros((x.shape[0], self.z_dim), x.dtype)
    _, s = self.step(self.initial_carry(x.shape[0]), self.features(x), eps)
    return self.emit(s['h'], s.get('fz'))


def unroll(model, params, x, eps):
  """Runs the model over x (B, T, D) with z noise eps (B, T, z_dim).

  Returns per-step (B, T, ...) arrays: 'out' (output distribution parameters), and with
  latents 'z', 'q' (mu, sigma) and 'p' (mu, sigma).
  """
  b = x.shape[0]
  fx = model.apply(params, x, method=VRNN.features)
  step = functools.partial(model.apply, params, method=VRNN.step)

  def body(carry, inputs):
    return step(carry, *inputs)

  carry = model.apply(params, b, method=VRNN.initial_carry)
  time_major = lambda a: jnp.swapaxes(a, 0, 1)
  _, seq = jax.lax.scan(body, carry, (time_major(fx), time_major(eps)))
  seq = jax.tree.map(time_major, seq)
  outs = model.apply(params, seq['h'], seq.get('fz'), method=VRNN.emit)
  return {**outs, **{k: seq[k] for k in ('z', 'q') if k in seq}}


def generate(model, params, key, batch, length, temperature=1.0):
  """Ancestral samples (batch, length, D) from the model."""
  step = functools.partial(model.apply, params, method=VRNN.generate_step, temperature=temperature)
  carry = model.apply(params, batch, method=VRNN.initial_carry)
  _, xs = jax.lax.scan(step, carry, jax.random.split(key, length))
  return jnp.swapaxes(xs, 0, 1)
