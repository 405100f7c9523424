"""Per-layer conv benchmark: our matmul path vs plain lax vs PyTorch, on CPU.

Run from the repository root:

    python -m benchmarks.conv [--batch 640] [--repeats 7] [--threads N]

Each row is one layer of the SPS model (frames of 32x32x3; batch 32 * 20 = 640
frames by default): the encoder convolutions and the decoder transposed
convolutions, all kernel 4, stride 2, padding 1, with bias.  The timed work is
one forward + backward pass with gradients w.r.t. input, kernel and bias
(jitted `value_and_grad` of sum(y * g) in JAX, `y.backward(g)` in PyTorch),
after warm-up; the variants are interleaved and each time is the median of
`--repeats` runs.  The last row is a conv-only stand-in for a training step
(encoder with ReLUs on all frames, the decoder applied `--decodes` times, MSE
loss, gradients of all conv parameters); `benchmarks/sps_step.py` times the
real SPS step.

Columns: `ms matmul` = common.conv with impl='matmul', `ms lax` = impl='lax'
(`lax.conv_general_dilated` / `lax.conv_transpose`), `ms torch` = torch.nn
functional conv2d / conv_transpose2d on channels-last tensors (oneDNN's faster
layout on CPU) with `torch.set_num_threads` set to the same core count, `torch/matmul` = ms torch / ms matmul (1.0 = as fast as
PyTorch, higher is better for us).  `--skip-lax` leaves out the (very slow on
CPU) lax column.

Both frameworks run in one process and so under the same allocator; PyTorch is
sensitive to it, so optionally preload jemalloc for the whole process, e.g.
`LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python -m benchmarks.conv`.
Other load on the machine makes all columns noisy (PyTorch's OpenMP threads
suffer most); interleaving keeps the ratios comparable, not the absolute times.
"""

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from common.conv import conv2d, conv_transpose2d

try:
  import torch
  import torch.nn.functional as F
except ImportError:
  torch = None

# (name, transposed, in channels, out channels, input spatial size)
LAYERS = [
    ('enc 3->64 (32->16)', False, 3, 64, 32),
    ('enc 64->128 (16->8)', False, 64, 128, 16),
    ('enc 128->256 (8->4)', False, 128, 256, 8),
    ('dec 256->128 (4->8)', True, 256, 128, 4),
    ('dec 128->64 (8->16)', True, 128, 64, 8),
    ('dec 64->3 (16->32)', True, 64, 3, 16),
]
ENC = [l for l in LAYERS if not l[1]]
DEC = [l for l in LAYERS if l[1]]


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


def _layer_jax(transposed, cin, cout, size, batch, impl, rng):
  x = jnp.asarray(rng.standard_normal((batch, size, size, cin), np.float32))
  w = jnp.asarray(rng.standard_normal((4, 4, cin, cout), np.float32) * 0.05)
  b = jnp.zeros((cout,), jnp.float32)
  op = conv_transpose2d if transposed else conv2d
  out = jax.eval_shape(lambda x, w: op(x, w, 2, 1, impl), x, w)
  g = jnp.asarray(rng.standard_normal(out.shape, np.float32))

  @jax.jit
  def step(x, w, b, g):
    return jax.value_and_grad(lambda x, w, b: jnp.sum((op(x, w, 2, 1, impl) + b) * g),
                              argnums=(0, 1, 2))(x, w, b)

  return lambda: jax.block_until_ready(step(x, w, b, g))


def _channels_last(a, requires_grad=False):
  """NCHW numpy array -> torch tensor in channels-last memory (faster with oneDNN on CPU)."""
  t = torch.from_numpy(np.ascontiguousarray(a)).contiguous(memory_format=torch.channels_last)
  return t.requires_grad_(requires_grad)


def _layer_torch(transposed, cin, cout, size, batch, rng):
  x = _channels_last(rng.standard_normal((batch, cin, size, size), np.float32), True)
  wshape = (cin, cout, 4, 4) if transposed else (cout, cin, 4, 4)
  w = _channels_last(rng.standard_normal(wshape, np.float32) * 0.05, True)
  b = torch.zeros(cout, requires_grad=True)
  op = F.conv_transpose2d if transposed else F.conv2d
  out_size = size * 2 if transposed else size // 2
  g = _channels_last(rng.standard_normal((batch, cout, out_size, out_size), np.float32))

  def step():
    x.grad = w.grad = b.grad = None
    op(x, w, b, stride=2, padding=1).backward(g)

  return step


def _init(rng, layers):
  return [(rng.standard_normal((4, 4, cin, cout), np.float32) * (16 * cin) ** -0.5,
           np.zeros(cout, np.float32)) for _, _, cin, cout, _ in layers]


def _model_jax(batch, decodes, impl, rng):
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

  step = jax.jit(jax.value_and_grad(loss_fn))
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
  parser.add_argument('--batch', type=int, default=640)
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--decodes', type=int, default=2, help='decoder calls in the model step')
  parser.add_argument('--threads', type=int, default=os.cpu_count())
  parser.add_argument('--skip-lax', action='store_true')
  args = parser.parse_args()
  if torch is not None:
    torch.set_num_threads(args.threads)
  rng = np.random.default_rng(0)
  impls = ['matmul'] + ([] if args.skip_lax else ['lax'])

  rows = []
  for name, transposed, cin, cout, size in LAYERS:
    fns = [_layer_jax(transposed, cin, cout, size, args.batch, impl, rng) for impl in impls]
    if torch is not None:
      fns.append(_layer_torch(transposed, cin, cout, size, args.batch, rng))
    rows.append((name, _median_ms(fns, args.repeats)))
  fns = [_model_jax(args.batch, args.decodes, impl, rng) for impl in impls]
  if torch is not None:
    fns.append(_model_torch(args.batch, args.decodes, rng))
  rows.append((f'enc+dec step ({args.decodes} decodes)', _median_ms(fns, max(3, args.repeats // 2))))

  print(f'batch {args.batch}, {args.threads} threads, jax {jax.__version__}'
        + (f', torch {torch.__version__}' if torch is not None else ''))
  print('| layer | ms matmul | ms lax | ms torch | torch/matmul |')
  print('|---|---:|---:|---:|---:|')
  for name, ms in rows:
    ms = dict(zip(impls + (['torch'] if torch is not None else []), ms))
    cell = lambda k: f'{ms[k]:.1f}' if k in ms else '-'
    ratio = f"{ms['torch'] / ms['matmul']:.2f}" if 'torch' in ms else '-'
    print(f"| {name} | {cell('matmul')} | {cell('lax')} | {cell('torch')} | {ratio} |")


if __name__ == '__main__':
  main()
