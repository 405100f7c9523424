"""One VRNN training step: JAX (this codebase) against a PyTorch twin.

Run from the repository root:

    python -m benchmarks.vrnn_step [--variant handwriting] [--steps 5] [--rounds 3]
                                   [--batch N] [--max_len T] [--torch naive,hoisted]

What it measures: the wall time of one full training step (phi_x on the sequence, the
recurrence over T steps with the encoder, reparameterisation, phi_z and the LSTM, then the
prior, decoder and output head on all B*T steps, the masked negative ELBO with analytic
KL; gradients of everything; global-norm clipping; Adam) at the sizes of a
`configs/vrnn.py` variant (default `handwriting`: batch 32, 256 steps, LSTM 256, phi 64/64,
MLPs 256, z 16, a 20-component bivariate mixture and a pen bit; `iam` has the paper's
sizes, LSTM 1200). The data are synthetic and fixed: dx, dy ~ N(0, 1), pen bit
Bernoulli(0.05) (bits Bernoulli(0.5) for `mnist_rows`), every fourth sequence padded from a
random length on, masked.

  * JAX: the task's own `train_step` from `vrnn.train.make_task`, jitted with state donation
    and the shardings exactly as `common/loop.py` does, each step's batch put on the device
    as the loop does.
  * PyTorch: `benchmarks/torch_vrnn.py`, the same model, loss and optimiser at the same
    sizes, starting from the same weights, in two versions: 'hoisted' runs the JAX model's
    algorithm (only the recurrent part in the per-step loop), 'naive' runs every layer
    inside the loop, as the popular PyTorch VRNN ports do. On CPU `torch.set_num_threads`
    is set to the cores JAX uses (`--threads`, default: the CPUs this process may run on);
    on a GPU torch runs on cuda (`--torch_device`).

Both are warmed up (JAX: compiled, its compile time reported; torch: the matmul flops of a
step counted by FlopCounterMode, forward and backward; XLA's estimate, also printed, counts
the scan body once), then alternated in one process: each of `--rounds` rounds times
`--steps` JAX steps (block_until_ready at the end) and then `--steps` steps of each torch
version. The median s/step over the rounds is reported for each, and the last line is

    ratio=<JAX steps/s / torch steps/s>

against the faster torch version: above 1 means JAX trains faster than PyTorch.

Both sides run in the same process, so they share one malloc. To run both under jemalloc
(Debian: apt-get install libjemalloc2):

    LD_PRELOAD=$(ls /usr/lib/x86_64-linux-gnu/libjemalloc.so.2) python -m benchmarks.vrnn_step

The allocator and the load average are printed. Other load on the machine makes both
numbers noisy, and on CPU it hurts torch far more than XLA: torch runs thousands of small
ops per step, each a parallel region whose threads all have to be scheduled, so with one
of two cores busy elsewhere a torch step can take many times longer. Compare on an idle
machine; the alternation keeps the ratio fair against slow drifts, not against that.
"""
import argparse
import os
import statistics
import time
from unittest import mock

import jax
import numpy as np

from common import sharding
from configs import vrnn as vrnn_configs
from vrnn import train as vrnn_train

TORCH_VERSIONS = ('hoisted', 'naive')


def default_threads():
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count()


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--variant', default='handwriting', choices=vrnn_configs.VARIANTS)
  p.add_argument('--batch', type=int, default=0, help='0: the variant\'s batch_size')
  p.add_argument('--max_len', type=int, default=0, help='0: the variant\'s data.max_len')
  p.add_argument('--steps', type=int, default=5, help='steps of each framework per round')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--torch', default=','.join(TORCH_VERSIONS),
                 help='comma-separated torch versions to time (hoisted, naive)')
  p.add_argument('--torch_device', default='auto', help="'auto': cuda if available, else cpu")
  p.add_argument('--threads', type=int, default=default_threads(),
                 help='torch.set_num_threads (default: the CPUs this process may run on)')
  p.add_argument('--seed', type=int, default=0)
  return p.parse_args(argv)


def make_config(variant='handwriting', batch=0, max_len=0, seed=0):
  """The variant's config with the benchmark's batch and length; its data become synthetic."""
  c = vrnn_configs.get_config(variant)
  c.seed = seed
  c.batch_size = batch or c.batch_size
  c.data.max_len = max_len or c.data.max_len
  if c.data.source == 'iam':   # same x_dim; the IAM files are not needed
    c.data.source = 'synthetic'
  c.data.num_train = c.batch_size
  c.data.num_eval = c.batch_size
  vrnn_train.validate(c)
  return c


def synthetic_data(config, n=None, seed=0):
  """{'x': (n, T, D), 'mask': (n, T)} float32; every fourth sequence padded (zeros) from a
  random length in [T/2, T) on."""
  n = n or config.batch_size
  t, d = config.data.max_len, vrnn_train.x_dim(config)
  rng = np.random.default_rng(seed)
  if config.model.output == 'bernoulli':
    x = (rng.random((n, t, d)) < 0.5).astype(np.float32)
  else:
    x = rng.standard_normal((n, t, d), dtype=np.float32)
    if config.model.pen_bit:
      x[..., -1] = rng.random((n, t)) < 0.05
  mask = np.ones((n, t), np.float32)
  for i in range(3, n if t > 1 else 0, 4):
    mask[i, rng.integers(max(t // 2, 1), t):] = 0.0
  return {'x': x * mask[..., None], 'mask': mask}


def build_jax(config, data):
  """The jitted train step as common/loop.py builds it, its initial state and its batches.

  The task is `vrnn.train.make_task(config)` with its data replaced by `data`.
  Returns (step_fn, state, batch_fn(step) -> device batch, loop_key).
  """
  host = {**data, 'mean': np.zeros(data['x'].shape[-1], np.float32),
          'std': np.ones(data['x'].shape[-1], np.float32)}
  with mock.patch.object(vrnn_train, 'load_data', lambda config, split: host):
    task = vrnn_train.make_task(config)
  mesh = sharding.make_mesh()
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  init_key, loop_key = jax.random.split(jax.random.PRNGKey(config.seed))
  state = jax.jit(task.init, out_shardings=repl)(init_key)
  step_fn = jax.jit(task.train_step, donate_argnums=0,
                    in_shardings=(repl, batch_sh, repl), out_shardings=(repl, repl))
  batch_fn = lambda step: jax.device_put(task.train_batch(step), batch_sh)
  return step_fn, state, batch_fn, loop_key


def torch_device(name='auto'):
  import torch
  if name == 'auto':
    return 'cuda' if torch.cuda.is_available() else 'cpu'
  return name


def build_torch(config, data, params=None, naive=False, device='cpu', seed=0):
  """(step(i) -> loss, model) for the PyTorch twin on `data`, from flax `params` if given."""
  import torch
  from benchmarks import torch_vrnn
  torch.manual_seed(seed)
  model = torch_vrnn.from_config(config, vrnn_train.x_dim(config))
  if params is not None:
    torch_vrnn.load_flax_params(model, params)
  model = model.to(device)
  opt = torch_vrnn.make_optimizer(model, config.optim.lr, config.optim.weight_decay)
  x = torch.from_numpy(data['x']).to(device)
  mask = torch.from_numpy(data['mask']).to(device)
  gen = torch.Generator(device=device).manual_seed(seed)
  sync = torch.cuda.synchronize if str(device).startswith('cuda') else (lambda: None)

  def step(i):
    loss = torch_vrnn.train_step(model, opt, x, mask, config.optim.grad_clip, naive=naive,
                                 gen=gen)
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


def main(argv=None):
  args = parse_args(argv)
  import torch
  from benchmarks import torch_vrnn
  versions = [v for v in args.torch.split(',') if v]
  if not versions or set(versions) - set(TORCH_VERSIONS):
    raise SystemExit(f'--torch: a comma-separated subset of {", ".join(TORCH_VERSIONS)}')
  device = torch_device(args.torch_device)
  torch.set_num_threads(args.threads)
  config = make_config(args.variant, args.batch, args.max_len, args.seed)
  data = synthetic_data(config, seed=args.seed)
  m = config.model
  print(f'VRNN train step ({args.variant}): batch {config.batch_size} x {config.data.max_len} '
        f'steps ({int(data["mask"].sum())} real), x_dim {vrnn_train.x_dim(config)}, '
        f'{m.cell} {m.h_dim}, phi_x {m.phi_x_dim}, phi_z {m.phi_z_dim}, MLPs '
        f'{m.layers} x {m.hidden_dim}, z {m.z_dim}, prior {m.prior}, latent {m.latent}, '
        f'output {m.output}' + (f' (k={m.num_mixtures})' if m.output == 'gmm' else '') +
        (' + pen bit' if m.pen_bit else ''))
  print(f'jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device); '
        f'torch {torch.__version__} on {device}, {torch.get_num_threads()} threads; '
        f'cores {default_threads()}; allocator: {allocator()}; load average {load_average()}')

  step_fn, state, batch_fn, key = build_jax(config, data)
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
        f'{"n/a" if xla_flops is None else f"{xla_flops / 1e9:.4g} GFLOP"}/step (the scan body '
        f'counted once); '
        f'{jax_params} parameters; first loss {float(metrics["loss"]):.4f}')
  jax_step = [1]

  from torch.utils.flop_counter import FlopCounterMode
  torch_steps, flops = {}, None
  for v in versions:
    step, tmodel = build_torch(config, data, init_params, v == 'naive', device, args.seed)
    t0 = time.perf_counter()
    loss = step(0)
    with FlopCounterMode(display=False) as counter:   # counts matmuls, forward and backward
      step(1)
    flops = flops or counter.get_total_flops()
    n = torch_vrnn.num_params(tmodel)
    print(f'torch {v}: warm-up 2 steps {time.perf_counter() - t0:.2f} s; flop count '
          f'{counter.get_total_flops() / 1e9:.4g} GFLOP/step; {n} parameters'
          f'{"" if n == jax_params else " (DIFFERENT FROM JAX)"}; first loss {float(loss):.4f}')
    torch_steps[v] = step

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
