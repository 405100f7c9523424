"""One unsup_video training step: JAX (this codebase) against a PyTorch twin.

Run from the repository root:

    python -m benchmarks.unsup_video_step [--variant composite_conditional] [--steps 5]
                                          [--rounds 3] [--batch N] [--hidden N]
                                          [--torch hoisted,naive]

What it measures: the wall time of one full training step of the LSTM video model
(Srivastava et al. 2015) at the sizes of a `configs/unsup_video.py` variant (default
`composite_conditional`, the paper's best model: batch 80 sequences of 20 frames of 64x64
flattened to 4096 pixels; an encoder LSTM of 2048 units reads the first 10 frames; a
conditional decoder reconstructs them in reverse order and a conditional predictor
predicts the 10 that follow, both teacher-forced with the previous target frame; readouts
Dense 2048 -> 4096; sigmoid + Bernoulli cross-entropy summed over pixels, averaged over
sequences and frames, per branch, summed; gradients of everything; global-norm clipping;
RMSprop (decay 0.9, eps inside the square root as optax's, no momentum)). `--hidden`,
`--batch`, `--layers`, `--unconditional`, `--canvas`, `--num_frames` and `--num_input`
change the sizes; the conv variant is not twinned.

The frames are one fixed batch of Moving MNIST, generated once by
`unsup_video.data.moving_mnist` from the embedded digits (no TFDS needed), so that neither
side times the data generator:

  * JAX: the task's own `train_step` from `unsup_video.train.make_task`, jitted with state
    donation and the shardings exactly as `common/loop.py` does; each step's batch is put
    on the device with the batch sharding as the loop does (the loop's `train_batch`
    generates its frames on the device; here the fixed batch, already there, stands in).
  * PyTorch: `benchmarks/torch_unsup_video.py`, the same model, loss and optimiser at the
    same sizes, starting from the same weights, in two versions: 'hoisted' runs the JAX
    model's algorithm (each LSTM layer's input projection as one matmul over all frames,
    only h multiplied in the per-step loop, each readout once on all frames), 'naive' runs
    every layer, readout and loss per time step inside the loop, as the common nn.LSTMCell
    ports do. On CPU `torch.set_num_threads` is set to the cores JAX uses (`--threads`,
    default: the CPUs this process may run on); on a GPU torch runs on cuda
    (`--torch_device`).

Both are warmed up (JAX: compiled, its compile time reported; torch: the matmul flops of a
step counted by FlopCounterMode, forward and backward; XLA's estimate, also printed, counts
each scan body once), then alternated in one process: each of `--rounds` rounds times
`--steps` JAX steps (block_until_ready at the end) and then `--steps` steps of each torch
version. The median s/step over the rounds is reported for each, and the last line is

    ratio=<JAX steps/s / torch steps/s>

against the faster torch version: above 1 means JAX trains faster than PyTorch.

Both sides run in the same process, so they share one malloc. To run both under jemalloc
(Debian: apt-get install libjemalloc2):

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python -m benchmarks.unsup_video_step

The allocator and the load average are printed. Other load on the machine makes both
numbers noisy, and on CPU it hurts torch far more than XLA: every torch op is a parallel
region whose threads all have to be scheduled, so with a core busy elsewhere a torch step
can take many times longer (at --hidden 256 --batch 8 on 2 cores with a load of 3, torch
hoisted took 1.7 s/step with 2 threads and 0.13 s/step with `--threads 1`). Compare on an
idle machine; the alternation keeps the ratio fair against slow drifts, not against that.
At the default sizes a step is 0.64 TFLOP of matmuls (forward and backward): seconds per
step on a CPU.
"""
import argparse
import os
import statistics
import time
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

from common import sharding
from configs import unsup_video as uv_configs
from unsup_video import data as mm
from unsup_video import train as uv_train

TORCH_VERSIONS = ('hoisted', 'naive')
VARIANTS = tuple(v for v in uv_configs.VARIANTS if v != 'conv')   # the twin is flat only
NUM_DIGITS = 128   # embedded digits rendered for the fixed batch (one compiled chunk)


def default_threads():
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count()


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--variant', default='composite_conditional', choices=VARIANTS)
  p.add_argument('--batch', type=int, default=0, help='0: the variant\'s batch_size')
  p.add_argument('--hidden', type=int, default=0, help='0: the variant\'s model.hidden')
  p.add_argument('--layers', type=int, default=0, help='0: the variant\'s model.layers')
  p.add_argument('--unconditional', action='store_true',
                 help='model.conditional=False: the decoder and predictor get no input')
  p.add_argument('--canvas', type=int, default=0, help='0: the variant\'s data.canvas')
  p.add_argument('--num_frames', type=int, default=0, help='0: the variant\'s data.num_frames')
  p.add_argument('--num_input', type=int, default=0, help='0: the variant\'s data.num_input')
  p.add_argument('--steps', type=int, default=5, help='steps of each framework per round')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--torch', default=','.join(TORCH_VERSIONS),
                 help='comma-separated torch versions to time (hoisted, naive)')
  p.add_argument('--torch_device', default='auto', help="'auto': cuda if available, else cpu")
  p.add_argument('--threads', type=int, default=default_threads(),
                 help='torch.set_num_threads (default: the CPUs this process may run on)')
  p.add_argument('--seed', type=int, default=0)
  return p.parse_args(argv)


def make_config(variant='composite_conditional', batch=0, hidden=0, layers=0,
                conditional=None, canvas=0, num_frames=0, num_input=0, seed=0):
  """The variant's config at the benchmark's sizes; digits embedded, a token test set."""
  c = uv_configs.get_config(variant)
  c.seed = seed
  c.batch_size = batch or c.batch_size
  m, d = c.model, c.data
  m.hidden = hidden or m.hidden
  m.layers = layers or m.layers
  if conditional is not None:
    m.conditional = conditional
  d.canvas = canvas or d.canvas
  d.num_frames = num_frames or d.num_frames
  d.num_input = num_input or d.num_input
  d.digits = 'embedded'
  c.eval.num_test = c.eval.batch_size = 1   # the evaluator is built but never run
  uv_train.validate(c)
  return c


def synthetic_data(config, seed=0):
  """(frames (B, T, H, W) float32 in [0, 1]: one fixed Moving MNIST batch, its digits)."""
  digits = mm.embedded_digits(NUM_DIGITS, seed=seed)[0]
  frames = mm.moving_mnist(jax.random.PRNGKey(seed), digits, config.batch_size,
                           **uv_train.generator_kwargs(config))
  return np.array(frames), digits   # writable: torch.from_numpy warns on read-only arrays


def build_jax(config, frames, digits=None):
  """The jitted train step as common/loop.py builds it, its initial state and its batches.

  The task is `unsup_video.train.make_task(config)` with its digits replaced by `digits`
  and no test set; its batches are the fixed `frames`.
  Returns (step_fn, state, batch_fn(step) -> device batch, loop_key).
  """
  digits = frames[0, :1, :mm.DIGIT, :mm.DIGIT] if digits is None else digits
  with mock.patch.object(uv_train, 'load_digits', lambda config, split: digits), \
       mock.patch.object(uv_train, 'load_test_set', lambda config: (frames[:1], 'none')):
    task = uv_train.make_task(config)
  mesh = sharding.make_mesh()
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  init_key, loop_key = jax.random.split(jax.random.PRNGKey(config.seed))
  state = jax.jit(task.init, out_shardings=repl)(init_key)
  step_fn = jax.jit(task.train_step, donate_argnums=0,
                    in_shardings=(repl, batch_sh, repl), out_shardings=(repl, repl))
  on_device = {'frames': jax.device_put(jnp.asarray(frames), batch_sh)}
  batch_fn = lambda step: jax.device_put(on_device, batch_sh)
  return step_fn, state, batch_fn, loop_key


def torch_device(name='auto'):
  import torch
  if name == 'auto':
    return 'cuda' if torch.cuda.is_available() else 'cpu'
  return name


def build_torch(config, frames, params=None, naive=False, device='cpu', seed=0):
  """(step(i) -> loss, model) for the PyTorch twin on `frames`, from flax `params` if given."""
  import torch
  from benchmarks import torch_unsup_video as tuv
  torch.manual_seed(seed)
  model = tuv.from_config(config)
  if params is not None:
    tuv.load_flax_params(model, params)
  model = model.to(device)
  opt = tuv.make_optimizer(model, config.optim)
  x = torch.from_numpy(np.array(frames, np.float32)).to(device)
  sync = torch.cuda.synchronize if str(device).startswith('cuda') else (lambda: None)
  n_in, loss_cfg = config.data.num_input, config.loss

  def step(i):
    loss = tuv.train_step(model, opt, x, n_in, loss_cfg.recon_weight, loss_cfg.future_weight,
                          naive=naive)
    sync()
    return loss

  return step, model


def count_params(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def allocator():
  pre = os.environ.get('LD_PRELOAD', '')
  return ('jemalloc (LD_PRELOAD)' if 'jemalloc' in pre else
          f'LD_PRELOAD={pre}' if pre else 'glibc malloc (no LD_PRELOAD)')


def load_average():
  """Other work on the machine slows both sides, torch's threads the most."""
  try:
    return '%.2f %.2f %.2f' % os.getloadavg()
  except OSError:
    return 'n/a'


def _flops(compiled):
  try:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca['flops'])
  except Exception:   # not every backend / version reports it
    return None


def describe(config):
  m, d = config.model, config.data
  n_out = d.num_frames - d.num_input
  branches = {'composite': f'recon {d.num_input} + future {n_out}',
              'future': f'future {n_out}', 'autoencoder': f'recon {d.num_input}'}[m.mode]
  return (f'batch {config.batch_size} x {d.num_frames} frames of {d.canvas}x{d.canvas} '
          f'({d.canvas ** 2} pixels), encoder reads {d.num_input}; {m.mode} '
          f'({"conditional" if m.conditional else "unconditioned"}: {branches} frames); '
          f'{m.layers} x LSTM {m.hidden}; loss {config.loss.kind}; {config.optim.name} '
          f'(lr {config.optim.lr}, decay {config.optim.decay}, eps {config.optim.eps}, '
          f'momentum {config.optim.momentum}), clip {config.optim.grad_clip}')


def main(argv=None):
  args = parse_args(argv)
  import torch
  from benchmarks import torch_unsup_video as tuv
  versions = [v for v in args.torch.split(',') if v]
  if not versions or set(versions) - set(TORCH_VERSIONS):
    raise SystemExit(f'--torch: a comma-separated subset of {", ".join(TORCH_VERSIONS)}')
  device = torch_device(args.torch_device)
  torch.set_num_threads(args.threads)
  config = make_config(args.variant, args.batch, args.hidden, args.layers,
                       False if args.unconditional else None, args.canvas, args.num_frames,
                       args.num_input, args.seed)
  frames, digits = synthetic_data(config, seed=args.seed)
  print(f'unsup_video train step ({args.variant}): {describe(config)}')
  print(f'jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device); '
        f'torch {torch.__version__} on {device}, {torch.get_num_threads()} threads; '
        f'cores {default_threads()}; allocator: {allocator()}; load average {load_average()}')

  step_fn, state, batch_fn, key = build_jax(config, frames, digits)
  init_params = jax.device_get(state.params)   # before donation: the torch twins start here
  batch = batch_fn(0)
  t0 = time.perf_counter()
  lowered = step_fn.lower(state, batch, key)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  xla_flops = _flops(compiled)
  state, metrics = step_fn(state, batch, key)   # hits the compilation cache
  jax.block_until_ready((state, metrics))
  t3 = time.perf_counter()
  jax_params = count_params(state.params)
  print(f'JAX: trace+lower {t1 - t0:.1f} s, compile {t2 - t1:.1f} s, first call {t3 - t2:.2f} s; '
        f'XLA flop estimate '
        f'{"n/a" if xla_flops is None else f"{xla_flops / 1e9:.4g} GFLOP"}/step (each scan '
        f'body counted once); {jax_params} parameters; first loss {float(metrics["loss"]):.4f}')

  from torch.utils.flop_counter import FlopCounterMode
  torch_steps, flops = {}, None
  for v in versions:
    step, tmodel = build_torch(config, frames, init_params, v == 'naive', device, args.seed)
    t0 = time.perf_counter()
    loss = step(0)
    with FlopCounterMode(display=False) as counter:   # counts matmuls, forward and backward
      step(1)
    flops = flops or counter.get_total_flops()
    n = tuv.num_params(tmodel)
    print(f'torch {v}: warm-up 2 steps {time.perf_counter() - t0:.2f} s; flop count '
          f'{counter.get_total_flops() / 1e9:.4g} GFLOP/step; {n} parameters'
          f'{"" if n == jax_params else " (DIFFERENT FROM JAX)"}; first loss {float(loss):.4f}')
    torch_steps[v] = step
  jax_step = [1]

  def run_jax(n):
    nonlocal state
    t = time.perf_counter()
    for _ in range(n):
      state, metrics = step_fn(state, batch_fn(jax_step[0]), key)
      jax_step[0] += 1
    jax.block_until_ready((state, metrics))
    return (time.perf_counter() - t) / n

  def run_torch(step, n):
    t = time.perf_counter()
    for i in range(n):
      step(i)
    return (time.perf_counter() - t) / n

  names = ['jax'] + [f'torch_{v}' for v in versions]
  times = {k: [] for k in names}
  for r in range(args.rounds):
    times['jax'].append(run_jax(args.steps))
    for v in versions:
      times[f'torch_{v}'].append(run_torch(torch_steps[v], args.steps))
    print(f'round {r + 1}/{args.rounds}: ' +
          ', '.join(f'{k} {times[k][-1]:.4f} s/step' for k in names), flush=True)
  med = {k: statistics.median(v) for k, v in times.items()}
  print(f'{"":14} {"median s/step":>14} {"steps/s":>8} {"GFLOP/s (torch count)":>22}')
  for k in names:
    print(f'{k:14} {med[k]:14.4f} {1 / med[k]:8.3f} {flops / 1e9 / med[k]:22.1f}')
  best = min((k for k in names if k != 'jax'), key=med.get)
  ratio = med[best] / med['jax']   # (1 / jax s/step) / (1 / torch s/step)
  print(f'against the faster torch version: {best}')
  print(f'ratio={ratio:.3f}')
  return {'jax_s_per_step': med['jax'], 'ratio': ratio, 'flops': flops,
          **{f'{k}_s_per_step': med[k] for k in names if k != 'jax'}}


if __name__ == '__main__':
  main()
