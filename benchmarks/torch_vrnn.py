"""A PyTorch twin of the VRNN and its training step, for speed comparisons.

Same architecture, sizes and loss as `vrnn.models.VRNN` and `vrnn.losses.loss_fn`:

  * phi_x, phi_z, the encoder, the learned prior and the decoder are ReLU MLPs (`layers`
    hidden layers each); the encoder and prior end in Linear mu and Linear sigma with
    sigma = softplus(.) + min_scale;
  * the recurrence is the codebase's LSTM: one Linear on [x, h] giving the gates in the
    order i, f, g, o (as torch.nn.LSTMCell), forget-gate bias initialised to 1. It is not
    nn.LSTMCell, whose two biases would make the parameter counts differ;
  * output heads: 'gmm' (logits, mu, sigma, rho = MAX_RHO * tanh, log_softmax weights,
    log-sum-exp over components), 'gauss' (diagonal) and 'bernoulli', the first two with an
    optional Bernoulli pen bit;
  * loss: the mean over sequences of the masked sums over steps of KL(q || p) (analytic)
    minus log p(x_t | z_t, h_{t-1});
  * optimiser: Adam (AdamW with weight decay), clip_grad_norm_ before each step, as
    `common.train_state.make_optimizer` (clip_by_global_norm, then adam).

Two forward passes compute the same per-step terms:

  * hoisted (the default), the JAX model's algorithm: phi_x runs on the whole sequence
    before the loop; the per-step Python loop runs only what feeds the recurrence (encoder,
    reparameterisation, phi_z, LSTM); the prior, decoder, output head and the log-densities
    run on the stacked (B, T, .) hidden states after it;
  * naive (`naive=True`): everything inside the per-step loop, as the popular PyTorch VRNN
    ports do. It is slower (T small matmuls per layer instead of one large one) and is here
    because it is what people compare against; benchmarks report the faster of the two.

The GRU cell is not twinned (flax's GRUCell has its own parametrisation).
"""
import torch
from torch import nn
import torch.nn.functional as F

from benchmarks import harness
from vrnn.distributions import LOG_2PI, MAX_RHO   # plain floats, the same constants as JAX


# ---------------------------------------------------------------------------
# Distributions, as vrnn/distributions.py.

def positive(raw, floor):
  return F.softplus(raw) + floor


def gaussian_log_prob(x, mu, sigma):
  z = (x - mu) / sigma
  return torch.sum(-0.5 * z ** 2 - torch.log(sigma) - 0.5 * LOG_2PI, -1)


def gaussian_kl_dims(mu_q, sigma_q, mu_p, sigma_p):
  ratio = (sigma_q / sigma_p) ** 2
  return 0.5 * (ratio + ((mu_q - mu_p) / sigma_p) ** 2 - 1.0 - torch.log(ratio))


def bernoulli_log_prob(x, logits):
  return torch.sum(x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits), -1)


def bivariate_log_prob(x, mu, sigma, rho):
  z = (x - mu) / sigma
  one_minus = 1.0 - rho ** 2
  quad = (z[..., 0] ** 2 + z[..., 1] ** 2 - 2 * rho * z[..., 0] * z[..., 1]) / one_minus
  return -LOG_2PI - torch.sum(torch.log(sigma), -1) - 0.5 * torch.log(one_minus) - 0.5 * quad


def gmm_log_prob(x, logits, mu, sigma, rho):
  per_component = bivariate_log_prob(x[..., None, :], mu, sigma, rho)
  return torch.logsumexp(F.log_softmax(logits, -1) + per_component, -1)


def log_prob(kind, p, x):
  if kind == 'bernoulli':
    return bernoulli_log_prob(x, p['logits'])
  real = x[..., :-1] if 'pen_logit' in p else x
  if kind == 'gauss':
    lp = gaussian_log_prob(real, p['mu'], p['sigma'])
  else:
    lp = gmm_log_prob(real, p['logits'], p['mu'], p['sigma'], p['rho'])
  if 'pen_logit' in p:
    lp = lp + bernoulli_log_prob(x[..., -1:], p['pen_logit'])
  return lp


# ---------------------------------------------------------------------------
# Layers.

class MLP(nn.Module):
  def __init__(self, in_features, widths):
    super().__init__()
    dims = (in_features,) + tuple(widths)
    self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
    self.out_features = dims[-1]

  def forward(self, x):
    for layer in self.layers:
      x = F.relu(layer(x))
    return x


class GaussianHead(nn.Module):
  def __init__(self, in_features, widths, features, min_scale):
    super().__init__()
    self.mlp = MLP(in_features, widths)
    self.mu = nn.Linear(self.mlp.out_features, features)
    self.sigma = nn.Linear(self.mlp.out_features, features)
    self.min_scale = min_scale

  def forward(self, x):
    x = self.mlp(x)
    return self.mu(x), positive(self.sigma(x), self.min_scale)


class LSTM(nn.Module):
  """One Linear on [x, h] -> gates i, f, g, o; the forget-gate bias starts at 1."""

  def __init__(self, in_features, features):
    super().__init__()
    self.linear = nn.Linear(in_features + features, 4 * features)
    with torch.no_grad():
      self.linear.bias.zero_()
      self.linear.bias[features:2 * features] = 1.0

  def forward(self, carry, x):
    c, h = carry
    i, f, g, o = self.linear(torch.cat([x, h], -1)).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return c, h


class OutputHead(nn.Module):
  def __init__(self, in_features, kind, x_dim, num_mixtures, pen_bit, min_scale):
    super().__init__()
    self.kind, self.k, self.pen_bit, self.min_scale = kind, num_mixtures, pen_bit, min_scale
    if kind == 'bernoulli':
      self.logits = nn.Linear(in_features, x_dim)
    else:
      d = x_dim - int(pen_bit)
      if kind == 'gauss':
        self.mu, self.sigma = nn.Linear(in_features, d), nn.Linear(in_features, d)
      else:
        k = num_mixtures
        self.logits = nn.Linear(in_features, k)
        self.mu, self.sigma = nn.Linear(in_features, 2 * k), nn.Linear(in_features, 2 * k)
        self.rho = nn.Linear(in_features, k)
      if pen_bit:
        self.pen_logit = nn.Linear(in_features, 1)

  def forward(self, x):
    if self.kind == 'bernoulli':
      return {'logits': self.logits(x)}
    p = {}
    if self.kind == 'gauss':
      p['mu'] = self.mu(x)
      p['sigma'] = positive(self.sigma(x), self.min_scale)
    else:
      shape = x.shape[:-1] + (self.k, 2)
      p['logits'] = self.logits(x)
      p['mu'] = self.mu(x).reshape(shape)
      p['sigma'] = positive(self.sigma(x), self.min_scale).reshape(shape)
      p['rho'] = MAX_RHO * torch.tanh(self.rho(x))
    if self.pen_bit:
      p['pen_logit'] = self.pen_logit(x)
    return p


# ---------------------------------------------------------------------------
# The model.

class VRNNTwin(nn.Module):
  def __init__(self, x_dim, z_dim=16, h_dim=256, phi_x_dim=64, phi_z_dim=64, hidden_dim=256,
               layers=1, prior='learned', latent=True, output='gmm', num_mixtures=20,
               pen_bit=True, min_scale=1e-3):
    super().__init__()
    self.z_dim, self.h_dim, self.latent, self.output = z_dim, h_dim, latent, output
    hidden = [hidden_dim] * layers
    self.phi_x = MLP(x_dim, [phi_x_dim] * layers)
    fx = self.phi_x.out_features
    rnn_in, dec_in = fx, h_dim
    self.prior_net = None
    if latent:
      self.phi_z = MLP(z_dim, [phi_z_dim] * layers)
      self.encoder = GaussianHead(fx + h_dim, hidden, z_dim, min_scale)
      if prior == 'learned':
        self.prior_net = GaussianHead(h_dim, hidden, z_dim, min_scale)
      rnn_in += self.phi_z.out_features
      dec_in += self.phi_z.out_features
    self.decoder = MLP(dec_in, hidden)
    self.head = OutputHead(self.decoder.out_features, output, x_dim, num_mixtures, pen_bit,
                           min_scale)
    self.rnn = LSTM(rnn_in, h_dim)

  def prior_dist(self, h):
    if self.prior_net is not None:
      return self.prior_net(h)
    zeros = h.new_zeros(h.shape[:-1] + (self.z_dim,))
    return zeros, torch.ones_like(zeros)

  def emit(self, h, fz=None):
    """p(x_t | z_t, h_{t-1}) parameters and p(z_t | h_{t-1}); any leading shape."""
    if not self.latent:
      return self.head(self.decoder(h)), None
    return self.head(self.decoder(torch.cat([fz, h], -1))), self.prior_dist(h)

  def terms(self, x, mask, eps):
    """Per-step (B, T) log p(x_t | .) and KL, zero on padding: the JAX model's algorithm."""
    b, t, _ = x.shape
    fx = self.phi_x(x).transpose(0, 1)   # (T, B, F): one matmul for the whole sequence
    eps = eps.transpose(0, 1)
    c = h = x.new_zeros(b, self.h_dim)
    hs, fzs, mus, sigmas = [], [], [], []
    for i in range(t):
      hs.append(h)
      if self.latent:
        mu_q, sigma_q = self.encoder(torch.cat([fx[i], h], -1))
        fz = self.phi_z(mu_q + sigma_q * eps[i])
        fzs.append(fz)
        mus.append(mu_q)
        sigmas.append(sigma_q)
        c, h = self.rnn((c, h), torch.cat([fx[i], fz], -1))
      else:
        c, h = self.rnn((c, h), fx[i])
    stack = lambda xs: torch.stack(xs, 1)   # (B, T, .)
    h = stack(hs)
    out, p = self.emit(h, stack(fzs) if self.latent else None)
    log_px = log_prob(self.output, out, x) * mask
    if not self.latent:
      return log_px, torch.zeros_like(log_px)[..., None]
    return log_px, gaussian_kl_dims(stack(mus), stack(sigmas), *p) * mask[..., None]

  def terms_naive(self, x, mask, eps):
    """The same terms with every layer and density inside the per-step loop."""
    b, t, _ = x.shape
    c = h = x.new_zeros(b, self.h_dim)
    log_px, kl = [], []
    for i in range(t):
      x_t = x[:, i]
      fx = self.phi_x(x_t)
      if self.latent:
        mu_p, sigma_p = self.prior_dist(h)
        mu_q, sigma_q = self.encoder(torch.cat([fx, h], -1))
        fz = self.phi_z(mu_q + sigma_q * eps[:, i])
        out = self.head(self.decoder(torch.cat([fz, h], -1)))
        kl.append(gaussian_kl_dims(mu_q, sigma_q, mu_p, sigma_p) * mask[:, i, None])
        rnn_in = torch.cat([fx, fz], -1)
      else:
        out = self.head(self.decoder(h))
        kl.append(x.new_zeros(b, 1))
        rnn_in = fx
      log_px.append(log_prob(self.output, out, x_t) * mask[:, i])
      c, h = self.rnn((c, h), rnn_in)
    return torch.stack(log_px, 1), torch.stack(kl, 1)


def from_config(config, x_dim):
  """The twin of `vrnn.train.make_model(config)` (LSTM cell only)."""
  m = config.model
  if m.cell != 'lstm':
    raise ValueError(f'the torch twin has only the LSTM cell, not {m.cell!r}')
  return VRNNTwin(x_dim, m.z_dim, m.h_dim, m.phi_x_dim, m.phi_z_dim, m.hidden_dim, m.layers,
                  m.prior, m.latent, m.output, m.num_mixtures, m.pen_bit, m.min_scale)


def num_params(model):
  return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------
# Loss and train step.

def loss_fn(model, x, mask, eps=None, kl_weight=1.0, naive=False, gen=None, free_bits=0.0):
  """(loss, metrics) as `vrnn.losses.loss_fn`; eps (B, T, z_dim) is drawn from `gen` if None."""
  if eps is None:
    eps = torch.randn(x.shape[:2] + (model.z_dim,), generator=gen, device=x.device)
  log_px, kl_dims = (model.terms_naive if naive else model.terms)(x, mask, eps)
  log_px, kl = log_px.sum(1), kl_dims.sum((1, 2))
  steps = torch.clamp(mask.sum(), min=1.0)
  if free_bits and model.latent:   # max(lambda, KL per dimension per real step), as in JAX
    per_dim = kl_dims.sum((0, 1)) / steps
    penalty = torch.clamp(per_dim, min=free_bits).sum() * steps / x.shape[0]
  else:
    penalty = torch.mean(kl)
  loss = kl_weight * penalty - torch.mean(log_px)
  return loss, {'loss': loss, 'kl_penalty': penalty, 'elbo': torch.mean(log_px - kl),
                'elbo_per_step': torch.sum(log_px - kl) / steps,
                'log_px': torch.mean(log_px), 'kl': torch.mean(kl)}


def make_optimizer(model, lr, weight_decay=0.0):
  if weight_decay > 0:
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
  return torch.optim.Adam(model.parameters(), lr=lr)


def train_step(model, opt, x, mask, grad_clip, eps=None, kl_weight=1.0, naive=False, gen=None,
               free_bits=0.0):
  """One step: loss, backward, global-norm clipping, Adam. Returns the detached loss."""
  opt.zero_grad(set_to_none=True)
  loss, _ = loss_fn(model, x, mask, eps, kl_weight, naive, gen, free_bits)
  loss.backward()
  if grad_clip > 0:
    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
  opt.step()
  return loss.detach()


# ---------------------------------------------------------------------------
# Weights from the JAX model.

def named_pairs(model, params):
  """[(torch parameter, flax array)] for every parameter, flax Dense kernels as (in, out)."""
  p = params['params'] if 'params' in params else params
  pairs = []

  def dense(layer, q):
    pairs.extend([(layer.weight, q['kernel']), (layer.bias, q['bias'])])

  def mlp(module, q):   # an MLP without layers has no parameters (and no entry)
    for i, layer in enumerate(module.layers):
      dense(layer, q[f'Dense_{i}'])

  def gaussian(module, q):
    mlp(module.mlp, q.get('MLP_0', {}))
    dense(module.mu, q['mu'])
    dense(module.sigma, q['sigma'])

  mlp(model.phi_x, p.get('phi_x', {}))
  if model.latent:
    mlp(model.phi_z, p.get('phi_z', {}))
    gaussian(model.encoder, p['encoder'])
    if model.prior_net is not None:
      gaussian(model.prior_net, p['prior_net'])
  mlp(model.decoder, p.get('decoder', {}))
  for name in ('logits', 'mu', 'sigma', 'rho', 'pen_logit'):
    if hasattr(model.head, name):
      dense(getattr(model.head, name), p['head'][name])
  dense(model.rnn.linear, p['rnn']['Dense_0'])
  return pairs


def load_flax_params(model, params):
  """Copies the JAX model's parameters (`model.init(...)` of `vrnn.models.VRNN`) into the twin."""
  harness.copy_pairs(named_pairs(model, params))
