"""A PyTorch twin of the unsup_video LSTM models and their training step, for speed comparisons.

Same architecture, sizes, loss and optimiser as `unsup_video.models.VideoLSTM` (kind 'flat'),
`unsup_video.train.loss_fn` and `common.train_state.make_optimizer`:

  * frames (B, T, H, W) are flattened to H*W pixels, the LSTM inputs;
  * an encoder stack of `layers` LSTM layers reads the first `num_input` frames; its final
    (c, h) per layer starts each branch: 'recon' reconstructs the input frames in reverse
    order, 'future' predicts the frames that follow ('composite' has both, 'future' and
    'autoencoder' one each);
  * an LSTM layer is the codebase's: `wx` (Linear without bias, the input; absent in the
    bottom layer of an unconditioned branch) and `wh` (Linear with bias, the recurrence),
    gates in the order i, f, g, o, the forget-gate bias initialised to `forget_bias`;
    weights U(-init_scale, init_scale) (torch's default init when init_scale = 0; the
    benchmark copies the JAX weights in anyway). It is not nn.LSTMCell, whose two biases
    would make the parameter counts differ;
  * a conditional branch is teacher-forced: its input at output step k is its target frame
    k - 1 (zeros at k = 0); an unconditioned one has no input;
  * each branch's readout is a Linear hidden -> H*W giving frame logits;
  * loss: the Bernoulli cross-entropy of the targets under sigmoid(logits) (as
    optax.sigmoid_binary_cross_entropy), summed over pixels, averaged over sequences and
    frames, per branch; the total is the weighted sum over branches;
  * optimiser: `Optimizer` below, written by hand because torch's own RMSprop is not
    optax's: optax's `rmsprop` (eps_in_sqrt=True, its default) divides by sqrt(nu + eps),
    torch.optim.RMSprop by sqrt(nu) + eps. Global-norm clipping is written by hand too
    (optax scales by max_norm / norm when norm >= max_norm; clip_grad_norm_ by
    max_norm / (norm + 1e-6)). Adam and SGD use torch's, which match optax's.

Two forward passes compute the same loss:

  * hoisted (the default), the JAX model's algorithm: each LSTM layer's input projection
    is one matmul over all frames (the recurrence bias folded in), then a loop over time
    multiplies only h; layer after layer; each readout and its loss run once on all frames;
  * naive (`naive=True`): everything per time step inside the Python loop (every layer's
    input and recurrent matmuls, the readout and the loss of that frame), as the common
    PyTorch ports written with nn.LSTMCell do. It is slower (T small matmuls per layer
    instead of one large one) and is here because it is what people compare against;
    benchmarks report the faster of the two.

The conv kind (conv frame encoder, transposed-conv readout), MSE losses, the signed data
range and bfloat16 are not twinned.
"""
import torch
from torch import nn
import torch.nn.functional as F

from benchmarks import harness

MODES = ('composite', 'future', 'autoencoder')
BRANCHES = {'composite': ('recon', 'future'), 'future': ('future',),
            'autoencoder': ('recon',)}   # in the JAX model's order


# ---------------------------------------------------------------------------
# The model.

class LSTMLayer(nn.Module):
  """wx (no bias; None when unconditioned) and wh (with bias); gates i, f, g, o."""

  def __init__(self, in_features, features, init_scale=0.01, forget_bias=1.0):
    super().__init__()
    n = features
    self.features = n
    self.wx = nn.Linear(in_features, 4 * n, bias=False) if in_features else None
    self.wh = nn.Linear(n, 4 * n)
    with torch.no_grad():
      if init_scale > 0:
        for lin in (self.wx, self.wh):
          if lin is not None:
            lin.weight.uniform_(-init_scale, init_scale)
      self.wh.bias.zero_()
      self.wh.bias[n:2 * n] = forget_bias

  @property
  def has_input(self):
    return self.wx is not None

  def project(self, x):
    """The input's contribution to the gates for any leading shape, the wh bias included."""
    return F.linear(x, self.wx.weight, self.wh.bias)

  def recur(self, carry, gx=None):
    """One step from (c, h) and `project`'s output for this step (None: unconditioned)."""
    c, h = carry
    gates = self.wh(h) if gx is None else torch.addmm(gx, h, self.wh.weight.t())
    return self.gate(c, gates)

  @staticmethod
  def gate(c, gates):
    i, f, g, o = gates.chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return c, torch.sigmoid(o) * torch.tanh(c)

  def forward(self, carry, x=None):
    """One step with everything inside, as an LSTMCell: wh(h) + wx(x)."""
    c, h = carry
    gates = self.wh(h)
    if x is not None:
      gates = gates + self.wx(x)
    return self.gate(c, gates)


class VideoLSTMTwin(nn.Module):
  def __init__(self, mode='composite', conditional=True, layers=1, hidden=2048, frame_size=64,
               init_scale=0.01, forget_bias=1.0):
    super().__init__()
    if mode not in MODES:
      raise ValueError(f'mode {mode!r} is unknown; allowed values are {", ".join(MODES)}')
    self.mode, self.conditional, self.layers = mode, conditional, layers
    self.hidden, self.frame_size = hidden, frame_size
    pixels = frame_size ** 2
    lstm = lambda fin: LSTMLayer(fin, hidden, init_scale, forget_bias)
    self.enc = nn.ModuleList(lstm(pixels if l == 0 else hidden) for l in range(layers))
    self.stacks = nn.ModuleDict({
        b: nn.ModuleList(lstm((pixels if conditional else 0) if l == 0 else hidden)
                         for l in range(layers))
        for b in self.branches})
    self.readouts = nn.ModuleDict({b: nn.Linear(hidden, pixels) for b in self.branches})
    if init_scale > 0:
      with torch.no_grad():
        for r in self.readouts.values():
          r.weight.uniform_(-init_scale, init_scale)
          r.bias.zero_()

  @property
  def branches(self):
    return BRANCHES[self.mode]

  def zero_carries(self, like):
    zero = like.new_zeros(like.shape[-2], self.hidden)   # like: (..., B, F)
    return [(zero, zero)] * self.layers

  # -- hoisted: the JAX model's algorithm, time-major (T, B, .) --------------------------

  @staticmethod
  def run_stack(layers, x, carries, length):
    """Every layer over the whole sequence, one after another; x (T, B, F) or None.

    Returns (final carries, top h (T, B, n))."""
    finals = []
    for layer, carry in zip(layers, carries):
      gxs = [None] * length if x is None else layer.project(x).unbind(0)
      hs = []
      for gx in gxs:
        carry = layer.recur(carry, gx)
        hs.append(carry[1])
      finals.append(carry)
      x = torch.stack(hs, 0)
    return finals, x

  def branch_losses(self, frames, num_input):
    """{branch: mean over (B, T_branch) of the per-frame cross-entropy} (hoisted)."""
    b, t = frames.shape[:2]
    x = frames.reshape(b, t, -1).transpose(0, 1).contiguous()   # (T, B, H*W)
    enc_in = x[:num_input]
    carries, _ = self.run_stack(self.enc, enc_in, self.zero_carries(enc_in), num_input)
    targets = {'recon': enc_in.flip(0), 'future': x[num_input:]}
    out = {}
    for branch in self.branches:
      tgt = targets[branch]
      inp = None
      if self.conditional:
        inp = torch.cat([torch.zeros_like(tgt[:1]), tgt[:-1]], 0)
      _, hs = self.run_stack(self.stacks[branch], inp, carries, tgt.shape[0])
      logits = self.readouts[branch](hs)
      out[branch] = F.binary_cross_entropy_with_logits(logits, tgt, reduction='sum') / (
          tgt.shape[0] * b)
    return out

  # -- naive: everything per step ---------------------------------------------------------

  def branch_losses_naive(self, frames, num_input):
    """The same as `branch_losses`, every layer, readout and loss inside the per-step loop."""
    b, t = frames.shape[:2]
    x = frames.reshape(b, t, -1)
    carries = self.zero_carries(x[:, 0])
    for i in range(num_input):
      inp = x[:, i]
      new = []
      for layer, carry in zip(self.enc, carries):
        carry = layer(carry, inp)
        inp = carry[1]
        new.append(carry)
      carries = new
    enc_carries = carries
    out = {}
    for branch in self.branches:
      frame_of = ((lambda k: num_input - 1 - k) if branch == 'recon' else
                  (lambda k: num_input + k))
      steps = num_input if branch == 'recon' else t - num_input
      carries, total = enc_carries, 0.0
      for k in range(steps):
        inp = None
        if self.conditional:
          inp = torch.zeros_like(x[:, 0]) if k == 0 else x[:, frame_of(k - 1)]
        new = []
        for layer, carry in zip(self.stacks[branch], carries):
          carry = layer(carry, inp)
          inp = carry[1]
          new.append(carry)
        carries = new
        logits = self.readouts[branch](inp)
        total = total + F.binary_cross_entropy_with_logits(logits, x[:, frame_of(k)],
                                                           reduction='sum')
      out[branch] = total / (steps * b)
    return out


def from_config(config):
  """The twin of `unsup_video.train.make_model(config)` (kind 'flat', float32, BCE only)."""
  m, d = config.model, config.data
  if m.kind != 'flat':
    raise ValueError(f'the torch twin has only the flat kind, not {m.kind!r}')
  if m.dtype != 'float32':
    raise ValueError(f'the torch twin runs in float32 only, not {m.dtype!r}')
  if (config.loss.kind, m.output_activation, d.range) != ('bce', 'sigmoid', 'unit'):
    raise ValueError('the torch twin has only the BCE loss on sigmoid outputs and (0, 1) data; '
                     f'got loss.kind={config.loss.kind!r}, '
                     f'output_activation={m.output_activation!r}, data.range={d.range!r}')
  return VideoLSTMTwin(m.mode, m.conditional, m.layers, m.hidden, d.canvas, m.init_scale,
                       m.forget_bias)


def num_params(model):
  return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------
# Loss, optimiser and train step.

def loss_fn(model, frames, num_input, recon_weight=1.0, future_weight=1.0, naive=False):
  """(loss, metrics) as `unsup_video.train.loss_fn` on frames (B, T, H, W) in (0, 1)."""
  losses = (model.branch_losses_naive if naive else model.branch_losses)(frames, num_input)
  weights = {'recon': recon_weight, 'future': future_weight}
  total, metrics = 0.0, {}
  for branch, loss in losses.items():
    total = total + weights[branch] * loss
    metrics[f'{branch}_loss'] = loss
    metrics[f'{branch}_cross_entropy'] = loss   # the same number for BCE on (0, 1) data
  return total, {'loss': total, **metrics}


class Optimizer:
  """`common.train_state.make_optimizer`: optax's clip_by_global_norm, then the rule.

  'rmsprop' is optax.rmsprop (eps inside the square root, no bias correction, the
  squared-gradient average starting at 0, optional momentum as optax.trace after the
  learning rate), written with torch._foreach ops; weight_decay > 0 adds wd * p to the
  clipped gradient first (optax.add_decayed_weights). 'adam' (AdamW when weight_decay > 0)
  and 'momentum' (SGD) are torch's, which compute what optax's do.
  """

  def __init__(self, params, lr, grad_clip=0.0, weight_decay=0.0, name='rmsprop',
               momentum=0.0, decay=0.9, eps=1e-6):
    self.params = [p for p in params]
    self.lr, self.grad_clip, self.weight_decay = lr, grad_clip, weight_decay
    self.name, self.momentum, self.decay, self.eps = name, momentum, decay, eps
    self.inner = None
    if name == 'adam':
      cls = torch.optim.AdamW if weight_decay > 0 else torch.optim.Adam
      kw = dict(weight_decay=weight_decay) if weight_decay > 0 else {}
      self.inner = cls(self.params, lr=lr, eps=eps, **kw)
    elif name == 'momentum':
      self.inner = torch.optim.SGD(self.params, lr=lr, momentum=momentum,
                                   weight_decay=weight_decay)
    elif name == 'rmsprop':
      self.nu = [torch.zeros_like(p) for p in self.params]
      self.trace = [torch.zeros_like(p) for p in self.params] if momentum else None
    else:
      raise ValueError(f'optimizer {name!r} is unknown')

  def zero_grad(self):
    for p in self.params:
      p.grad = None

  @torch.no_grad()
  def clip(self, grads):
    """optax.clip_by_global_norm: g * max_norm / norm where norm >= max_norm (no host sync)."""
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    scale = torch.where(norm < self.grad_clip, torch.ones_like(norm), self.grad_clip / norm)
    torch._foreach_mul_(grads, scale)
    return norm

  @torch.no_grad()
  def step(self):
    grads = [p.grad for p in self.params]
    if self.grad_clip > 0:
      self.clip(grads)
    if self.inner is not None:
      self.inner.step()
      return
    if self.weight_decay > 0:
      torch._foreach_add_(grads, self.params, alpha=self.weight_decay)
    # nu = decay * nu + (1 - decay) * g^2; update = -lr * g / sqrt(nu + eps)
    torch._foreach_mul_(self.nu, self.decay)
    torch._foreach_addcmul_(self.nu, grads, grads, value=1 - self.decay)
    denom = torch._foreach_add(self.nu, self.eps)
    torch._foreach_sqrt_(denom)
    if self.trace is None:
      torch._foreach_addcdiv_(self.params, grads, denom, value=-self.lr)
      return
    # optax.trace after the learning rate: t = -lr * g / sqrt(nu + eps) + momentum * t
    updates = torch._foreach_div(grads, denom)
    torch._foreach_mul_(self.trace, self.momentum)
    torch._foreach_add_(self.trace, updates, alpha=-self.lr)
    torch._foreach_add_(self.params, self.trace)


def make_optimizer(model, optim):
  """The twin of `unsup_video.train.make_optimizer`; `optim` is config.optim."""
  return Optimizer(model.parameters(), optim.lr, optim.grad_clip, optim.weight_decay,
                   optim.name, optim.momentum, optim.decay, optim.eps)


def train_step(model, opt, frames, num_input, recon_weight=1.0, future_weight=1.0, naive=False):
  """One step: loss, backward, clipping and the update. Returns the detached loss."""
  opt.zero_grad()
  loss, _ = loss_fn(model, frames, num_input, recon_weight, future_weight, naive)
  loss.backward()
  opt.step()
  return loss.detach()


# ---------------------------------------------------------------------------
# Weights from the JAX model.

def named_pairs(model, params):
  """[(torch parameter, flax array)] for every parameter, flax Dense kernels as (in, out).

  The flax names: enc_<l>, stacks_<branch>_<l> ({'wx': {'kernel'}, 'wh': {'kernel',
  'bias'}}; no 'wx' in an unconditioned bottom layer) and readouts_<branch>.
  """
  p = params['params'] if 'params' in params else params
  pairs = []

  def lstm(layer, q):
    if layer.has_input:
      pairs.append((layer.wx.weight, q['wx']['kernel']))
    elif 'wx' in q:
      raise ValueError('the flax layer has input weights; the twin\'s has none')
    pairs.extend([(layer.wh.weight, q['wh']['kernel']), (layer.wh.bias, q['wh']['bias'])])

  for l, layer in enumerate(model.enc):
    lstm(layer, p[f'enc_{l}'])
  for branch in model.branches:
    for l, layer in enumerate(model.stacks[branch]):
      lstm(layer, p[f'stacks_{branch}_{l}'])
    q = p[f'readouts_{branch}']
    pairs.extend([(model.readouts[branch].weight, q['kernel']),
                  (model.readouts[branch].bias, q['bias'])])
  return pairs


def load_flax_params(model, params):
  """Copies the JAX model's parameters (`VideoLSTM.init(...)`) into the twin."""
  harness.copy_pairs(named_pairs(model, params))
