"""Per-layer conv benchmark: each path of common/conv.py vs PyTorch, on CPU.

Run from the repository root:

    python -m benchmarks.conv [--projects sps,vle,selfsup] [--repeats 7] [--threads N]
                              [--skip-lax] [--scan 3] [--xla_cpu_ynn_fusion_types reduce]

Each row is one convolution layer of a project's released recipe, at its batch: sps (frames
of 32x32x3, batch 32 * 20 = 640 frames; encoder k4 s2 convs, decoder k4 s2 transposed
convs), vle (32 images of 64x64; k4 s2 encoder, the ConvLSTM's 3x3 gates conv, the 1x1 token
conv, the decoder's 3x3 conv and transposed convs), selfsup (64 x 4 = 256 images of 32x32;
the ResNet's 3x3 convs of stride 1 and 2 and its 1x1 projections).  The timed work is one
forward + backward pass with gradients w.r.t. input and kernel (jitted `grad` of
sum(y * g) in JAX, `y.backward(g)` in PyTorch), after warm-up; the variants are interleaved
and each time is the median of `--repeats` runs.

Columns: `auto` = common.conv with impl='auto', the path `common.conv.layer_path` picks on CPU
(named, then its time), `matmul` = impl='matmul' (patch extraction + matmul, hand-written
backward; 1x1 stride-1 layers are one plain matmul), `hybrid` = impl='hybrid' (stride-1
layers: XLA's convolution forward and input gradient, patch matmul kernel gradient; other
layers as matmul), `lax` = impl='lax', `lax.conv_general_dilated` / `lax.conv_transpose` with
plain autodiff,
`torch` = torch.nn.functional conv2d / conv_transpose2d on channels-last tensors (oneDNN's
faster layout on CPU) with `torch.set_num_threads` = the core count, and `torch/auto` (torch's
time over auto's: 1.0 = as fast as PyTorch, higher is better for us).  JAX compiles with the
conv projects' XLA options (`--xla_cpu_ynn_fusion_types`, their configs' 'reduce': the
convolutions and dots on XLA's own kernels, see common.loop.compiler_options; '' = XLA's
defaults).
lax is timed on the stride-1 rows only (strided and transposed lax convolutions take seconds
a layer on CPU, ~40x the matmul path); `--skip-lax` leaves it out.  Rows marked `in scan` run
the stride-1 layer `--scan` times inside a `lax.scan` body (as vle's token steps do), where
the values kept for the backward pass are stacked over the steps; lax is left out there
(plain autodiff's backward convolutions inside a loop body take 50-100x longer; auto's
'lax_vjp' path writes them in the order XLA runs fast there).  The last row is the sps conv-only stand-in for a
training step (encoder with ReLUs on all frames, the decoder applied `--decodes` times, MSE
loss, gradients of all conv parameters); `benchmarks/*_step.py` time the real steps.

Both frameworks run in one process and so under the same allocator.  Other load on the
machine makes all columns noisy (PyTorch's OpenMP threads suffer most); interleaving keeps
the ratios comparable, not the absolute times.
"""

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax import lax

from common import loop
from configs import common as configs_common
from common.conv import conv2d, conv_transpose2d, layer_path

try:
  import torch
  import torch.nn.functional as F
except ImportError:
  torch = None

# (project, name, transposed, in channels, out channels, input size, kernel, stride, padding,
# batch)
LAYERS = [
    ('sps', 'enc 3->64 k4 s2 (32->16)', False, 3, 64, 32, 4, 2, 1, 640),
    ('sps', 'enc 64->128 k4 s2 (16->8)', False, 64, 128, 16, 4, 2, 1, 640),
    ('sps', 'enc 128->256 k4 s2 (8->4)', False, 128, 256, 8, 4, 2, 1, 640),
    ('sps', 'dec T 256->128 k4 s2 (4->8)', True, 256, 128, 4, 4, 2, 1, 640),
    ('sps', 'dec T 128->64 k4 s2 (8->16)', True, 128, 64, 8, 4, 2, 1, 640),
    ('sps', 'dec T 64->3 k4 s2 (16->32)', True, 64, 3, 16, 4, 2, 1, 640),
    ('vle', 'enc 3->32 k4 s2 (64->32)', False, 3, 32, 64, 4, 2, 1, 32),
    ('vle', 'ConvLSTM gates 64->128 3x3 @32', False, 64, 128, 32, 3, 1, 1, 32),
    ('vle', 'enc 32->64 k4 s2 (32->16)', False, 32, 64, 32, 4, 2, 1, 32),
    ('vle', 'token 64->4 1x1 @8', False, 64, 4, 8, 1, 1, 0, 32),
    ('vle', 'dec 4->64 3x3 @8', False, 4, 64, 8, 3, 1, 1, 32),
    ('vle', 'dec T 64->32 k4 s2 (16->32)', True, 64, 32, 16, 4, 2, 1, 32),
    ('selfsup', 'stem 3->32 3x3 s2 (32->16)', False, 3, 32, 32, 3, 2, 1, 256),
    ('selfsup', 'block 32->32 3x3 @16', False, 32, 32, 16, 3, 1, 1, 256),
    ('selfsup', 'block 32->64 3x3 s2 (16->8)', False, 32, 64, 16, 3, 2, 1, 256),
    ('selfsup', 'block 64->64 3x3 @8', False, 64, 64, 8, 3, 1, 1, 256),
    ('selfsup', 'shortcut 32->64 1x1 @8', False, 32, 64, 8, 1, 1, 0, 256),
    ('selfsup', 'block 128->128 3x3 @4', False, 128, 128, 4, 3, 1, 1, 256),
]
SPS = [l for l in LAYERS if l[0] == 'sps']
ENC = [l for l in SPS if not l[2]]
DEC = [l for l in SPS if l[2]]
IMPLS = ('auto', 'matmul', 'hybrid', 'lax')


def _median_ms(fns, repeats):
  """Interleaved timing: every repeat runs each fn once; returns median ms per fn."""
  for fn in fns:
    fn()
    fn()
  times = [[] for _ in fns]
  for _ in range(repeats):
    for t, fn in zip(times, fns):
      start = time.perf_counter()
      fn()
      t.append(time.perf_counter() - start)
  return [1e3 * statistics.median(t) for t in times]


def _pads(p):
  return ((p, p), (p, p))


def layer_arrays(layer, seed=0):
  """(x (N, H, W, C), kernel (k, k, C, O), cotangent g of the output or None) for one layer,
  numpy float32; both frameworks time the same numbers."""
  _, _, transposed, cin, cout, size, k, s, p, batch = layer
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch, size, size, cin), np.float32)
  w = rng.standard_normal((k, k, cin, cout), np.float32) * (k * k * cin) ** -0.5
  out = (size - 1) * s + k - 2 * p if transposed else (size + 2 * p - k) // s + 1
  return x, w, rng.standard_normal((batch, out, out, cout), np.float32)


def layer_jax(layer, impl, arrays, scan=0, options=None):
  """step() -> (dx, dw): the jitted gradients of sum(y * g), or with `scan` of the sum of
  `scan` applications of tanh(conv(h)[..., :C]) (a stride-1 layer inside a lax.scan); XLA
  compiles it with `options`."""
  _, _, transposed, cin, _, _, _, s, p, _ = layer
  x, w, g = map(jnp.asarray, arrays)
  op = lambda x, w: (conv_transpose2d if transposed else conv2d)(x, w, s, p, impl)
  if scan:
    def loss(x, w, g):
      del g
      body = lambda h, _: (jnp.tanh(op(h, w)[..., :cin]), None)
      return jnp.sum(lax.scan(body, x, None, length=scan)[0])
  else:
    loss = lambda x, w, g: jnp.sum(op(x, w) * g)
  step = jax.jit(jax.grad(loss, argnums=(0, 1)), compiler_options=options)
  return lambda: jax.block_until_ready(step(x, w, g))


def _channels_last(a, requires_grad=False):
  """NCHW numpy array -> torch tensor in channels-last memory (faster with oneDNN on CPU)."""
  t = torch.from_numpy(np.ascontiguousarray(a)).contiguous(memory_format=torch.channels_last)
  return t.requires_grad_(requires_grad)


def layer_torch(layer, arrays, scan=0):
  """The same step in PyTorch on channels-last tensors; step() -> (dx, dw) in torch layouts."""
  _, _, transposed, cin, _, _, _, s, p, _ = layer
  x, w, g = arrays
  x = _channels_last(x.transpose(0, 3, 1, 2), True)
  w = _channels_last(w.transpose(2, 3, 0, 1) if transposed else w.transpose(3, 2, 0, 1), True)
  g = _channels_last(g.transpose(0, 3, 1, 2))
  op = lambda x: (F.conv_transpose2d if transposed else F.conv2d)(x, w, stride=s, padding=p)

  def step():
    x.grad = w.grad = None
    if scan:
      h = x
      for _ in range(scan):
        h = torch.tanh(op(h)[:, :cin])
      h.sum().backward()
    else:
      op(x).backward(g)
    return x.grad, w.grad

  return step


def _init(rng, layers):
  return [(rng.standard_normal((4, 4, cin, cout), np.float32) * (16 * cin) ** -0.5,
           np.zeros(cout, np.float32)) for _, _, _, cin, cout, *_ in layers]


def _model_jax(batch, decodes, impl, rng, options=None):
  params = jax.tree.map(jnp.asarray, (_init(rng, ENC), _init(rng, DEC)))
  frames = jnp.asarray(rng.random((batch, 32, 32, 3), np.float32))

  def loss_fn(params, frames):
    enc, dec = params
    h = frames
    for w, b in enc:
      h = jax.nn.relu(conv2d(h, w, 2, 1, impl) + b)
    loss = 0.0
    for d in range(decodes):
      y = h * (1.0 + 0.1 * d)  # stand-in for different latents per decode call
      for i, (w, b) in enumerate(dec):
        y = conv_transpose2d(y, w, 2, 1, impl) + b
        y = jax.nn.relu(y) if i < len(dec) - 1 else y
      loss = loss + jnp.mean((y - frames) ** 2)
    return loss

  step = jax.jit(jax.value_and_grad(loss_fn), compiler_options=options)
  return lambda: jax.block_until_ready(step(params, frames))


def _model_torch(batch, decodes, rng):
  enc, dec = [[(_channels_last(w.transpose(3, 2, 0, 1) if i == 0 else w.transpose(2, 3, 0, 1),
                               True), torch.tensor(b, requires_grad=True))
               for w, b in _init(rng, layers)] for i, layers in enumerate((ENC, DEC))]
  frames = _channels_last(rng.random((batch, 3, 32, 32), np.float32))

  def step():
    for p in [t for wb in enc + dec for t in wb]:
      p.grad = None
    h = frames
    for w, b in enc:
      h = torch.relu(F.conv2d(h, w, b, stride=2, padding=1))
    loss = 0.0
    for d in range(decodes):
      y = h * (1.0 + 0.1 * d)
      for i, (w, b) in enumerate(dec):
        y = F.conv_transpose2d(y, w, b, stride=2, padding=1)
        y = torch.relu(y) if i < len(dec) - 1 else y
      loss = loss + torch.mean((y - frames) ** 2)
    loss.backward()

  return step


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--projects', default='sps,vle,selfsup')
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--decodes', type=int, default=2, help='decoder calls in the sps step')
  parser.add_argument('--scan', type=int, default=3, help='steps of the in-scan rows (0: none)')
  parser.add_argument('--threads', type=int, default=os.cpu_count())
  parser.add_argument('--skip-lax', action='store_true')
  parser.add_argument('--xla_cpu_ynn_fusion_types', default=configs_common.CONV_YNN_FUSION_TYPES,
                      help="the conv projects' config field; '' = XLA's defaults")
  args = parser.parse_args()
  options = loop.compiler_options({'xla_cpu_ynn_fusion_types': args.xla_cpu_ynn_fusion_types})
  if torch is not None:
    torch.set_num_threads(args.threads)
  rng = np.random.default_rng(0)
  projects = args.projects.split(',')
  cols = [i for i in IMPLS if not (args.skip_lax and i == 'lax')] + (
      ['torch'] if torch is not None else [])

  def row(label, layer, scan=0):
    _, _, transposed, _, _, _, k, s, p, _ = layer
    auto = layer_path('auto', transposed, (k, k), (s, s), _pads(p))
    stride1 = s == 1 and not transposed and k > 1
    ok = {'auto': True, 'matmul': True, 'hybrid': stride1, 'lax': stride1 and not scan}
    impls = [i for i in cols if i != 'torch' and ok[i]]
    arrays = layer_arrays(layer)
    fns = [layer_jax(layer, i, arrays, scan, options) for i in impls]
    if torch is not None:
      fns.append(layer_torch(layer, arrays, scan))
    ms = dict(zip(impls + (['torch'] if torch is not None else []),
                  _median_ms(fns, args.repeats)))
    print(f'| {label} | {auto} | ' + ' | '.join(f'{ms[c]:.1f}' if c in ms else '-' for c in cols)
          + (f" | {ms['torch'] / ms['auto']:.2f} |" if 'torch' in ms else ' | - |'), flush=True)

  print(f'{args.threads} threads, jax {jax.__version__}'
        + (f', torch {torch.__version__}' if torch is not None else '') + '; ms per fwd+bwd; '
        f'XLA options {options}')
  print('| layer (batch) | auto path | ' + ' | '.join(f'ms {c}' for c in cols) + ' | torch/auto |')
  print('|---|---|' + '---:|' * (len(cols) + 1))
  for layer in LAYERS:
    if layer[0] not in projects:
      continue
    label = f'{layer[0]} {layer[1]} ({layer[9]})'
    row(label, layer)
    if args.scan and layer[7] == 1 and not layer[2] and layer[6] > 1 and layer[0] == 'vle':
      row(f'{label}, in scan x{args.scan}', layer, args.scan)
  if 'sps' in projects:
    impls = ['auto']
    fns = [_model_jax(640, args.decodes, 'auto', rng, options)]
    if torch is not None:
      fns.append(_model_torch(640, args.decodes, rng))
    ms = dict(zip(impls + (['torch'] if torch is not None else []),
                  _median_ms(fns, max(3, args.repeats // 2))))
    print(f'| sps enc+dec step ({args.decodes} decodes, 640) | - | '
          + ' | '.join(f'{ms[c]:.1f}' if c in ms else '-' for c in cols)
          + (f" | {ms['torch'] / ms['auto']:.2f} |" if 'torch' in ms else ' | - |'))


if __name__ == '__main__':
  main()
