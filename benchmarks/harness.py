"""What the step benchmarks (`sps_step`, `vrnn_step`, `unsup_video_step`) share.

Each times one training step of a project's JAX task against a PyTorch twin in one process:
the JAX step jitted as `common/loop.py` jits it, both sides warmed up, then alternated round
by round; the medians go into a table and the last line is `ratio=...`.
"""
import os
import statistics
import time

import jax
import numpy as np

from common import loop
from common import sharding

TORCH_VERSIONS = ('hoisted', 'naive')   # the twins of vrnn and unsup_video have both


def default_threads():
  """The CPUs this process may run on: torch gets as many threads as the cores JAX uses."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count()


def allocator():
  """Both sides share one malloc, and PyTorch is sensitive to which."""
  pre = os.environ.get('LD_PRELOAD', '')
  return ('jemalloc (LD_PRELOAD)' if 'jemalloc' in pre else
          f'LD_PRELOAD={pre}' if pre else 'glibc malloc (no LD_PRELOAD)')


def load_average():
  """Other work on the machine slows both sides, torch's threads the most."""
  try:
    return '%.2f %.2f %.2f' % os.getloadavg()
  except OSError:
    return 'n/a'


def count_params(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def xla_flops(compiled):
  """XLA's flop estimate of a compiled function, None where it gives none."""
  try:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca['flops'])
  except Exception:   # not every backend / version reports it
    return None


def jit_like_loop(task, config):
  """The task's init and train step jitted as common/loop.py does for `config`: the state
  replicated and donated, the batch sharded over the devices, the config's compiler options,
  the loop's keys from config.seed.

  Returns (step_fn, state, put(batch) -> the batch on the devices, loop_key).
  """
  init, step_fn, put = loop.compile_task(task, sharding.make_mesh(), loop.compiler_options(config))
  init_key, loop_key = loop.run_keys(config.seed)
  return step_fn, init(init_key), put, loop_key


def warm_up_jax(step_fn, state, batch_fn, key, flops_note=''):
  """Compiles the step and runs it once; prints the times, XLA's flop estimate (followed by
  `flops_note`), the parameter count and the loss.

  Returns (run(n) -> s/step of the next n steps, XLA's flops or None, parameter count).
  """
  batch = batch_fn(0)
  t0 = time.perf_counter()
  lowered = step_fn.lower(state, batch, key)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  flops = xla_flops(compiled)
  state, metrics = step_fn(state, batch, key)   # hits the compilation cache
  jax.block_until_ready((state, metrics))
  t3 = time.perf_counter()
  num_params = count_params(state.params)
  print(f'JAX: trace+lower {t1 - t0:.1f} s, compile {t2 - t1:.1f} s, first call {t3 - t2:.2f} s; '
        f'XLA flop estimate '
        f'{"n/a" if flops is None else f"{flops / 1e9:.4g} GFLOP"}/step{flops_note}; '
        f'{num_params} parameters; first loss {float(metrics["loss"]):.4f}')
  step = 1

  def run(n):
    nonlocal state, step
    t = time.perf_counter()
    for _ in range(n):
      state, metrics = step_fn(state, batch_fn(step), key)
      step += 1
    jax.block_until_ready((state, metrics))
    return (time.perf_counter() - t) / n

  return run, flops, num_params


def warm_up_torch(step):
  """Runs `step(i) -> loss` for i = 0 and 1, counting the flops of the second with
  FlopCounterMode (matmuls and convolutions, forward and backward).

  Returns (run(n) -> s/step of the next n steps (i = 2, 3, ... on from the last call), the
  seconds the two warm-up steps took, the flops of a step, the two losses).
  """
  from torch.utils.flop_counter import FlopCounterMode
  t0 = time.perf_counter()
  first = step(0)
  with FlopCounterMode(display=False) as counter:
    second = step(1)
  seconds = time.perf_counter() - t0
  i = 2

  def run(n):
    nonlocal i
    t = time.perf_counter()
    for _ in range(n):
      step(i)
      i += 1
    return (time.perf_counter() - t) / n

  return run, seconds, counter.get_total_flops(), (first, second)


def time_rounds(runs, rounds, steps, digits):
  """Times `steps` steps of each of `runs` (name -> run(n) -> s/step) in turn, `rounds` times,
  printing each round: alternating keeps slow drifts of the machine from favouring one side.

  Returns the median s/step of each.
  """
  times = {k: [] for k in runs}
  for r in range(rounds):
    for k, run in runs.items():
      times[k].append(run(steps))
    print(f'round {r + 1}/{rounds}: ' +
          ', '.join(f'{k} {times[k][-1]:.{digits}f} s/step' for k in runs), flush=True)
  return {k: statistics.median(v) for k, v in times.items()}


def print_table(medians, flops, flops_label, name_width, digits):
  """The medians as s/step and steps/s, and as GFLOP/s where `flops` per step is known."""
  flops_width = len(flops_label) + 1
  print(f'{"":{name_width}} {"median s/step":>14} {"steps/s":>8}' +
        (f' {flops_label:>{flops_width}}' if flops else ''))
  for k, s in medians.items():
    print(f'{k:{name_width}} {s:14.{digits}f} {1 / s:8.3f}' +
          (f' {flops / 1e9 / s:{flops_width}.1f}' if flops else ''))


def against_one_twin(run_jax, run_torch, rounds, steps, flops, flops_label, digits):
  """Alternates JAX with a single torch twin, prints the table and the ratio line.

  Returns {'jax_s_per_step', 'torch_s_per_step', 'ratio', 'flops'}.
  """
  med = time_rounds({'jax': run_jax, 'torch': run_torch}, rounds, steps, digits=digits)
  print_table(med, flops, flops_label, name_width=6, digits=digits)
  ratio = med['torch'] / med['jax']   # (1 / jax s/step) / (1 / torch s/step)
  print(f'ratio={ratio:.3f}')
  return {'jax_s_per_step': med['jax'], 'torch_s_per_step': med['torch'], 'ratio': ratio,
          'flops': flops}


def copy_pairs(pairs):
  """Copies each flax array of `pairs` [(torch parameter, flax array)] into its parameter:
  flax Dense kernels are (in, out), torch Linear weights (out, in)."""
  import torch
  with torch.no_grad():
    for tp, a in pairs:
      a = torch.from_numpy(np.array(a, np.float32))
      tp.copy_(a.T if tp.dim() == 2 else a)


# ---------------------------------------------------------------------------
# The twins with a hoisted and a naive version (vrnn, unsup_video).

def add_version_args(p):
  """The options after the sizes: timing, torch versions and device, threads, seed."""
  p.add_argument('--steps', type=int, default=5, help='steps of each framework per round')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--torch', default=','.join(TORCH_VERSIONS),
                 help='comma-separated torch versions to time (hoisted, naive)')
  p.add_argument('--torch_device', default='auto', help="'auto': cuda if available, else cpu")
  p.add_argument('--threads', type=int, default=default_threads(),
                 help='torch.set_num_threads (default: the CPUs this process may run on)')
  p.add_argument('--seed', type=int, default=0)


def set_up_torch(args):
  """Checks --torch, picks the device and sets torch's threads. Returns (versions, device)."""
  import torch
  versions = [v for v in args.torch.split(',') if v]
  if not versions or set(versions) - set(TORCH_VERSIONS):
    raise SystemExit(f'--torch: a comma-separated subset of {", ".join(TORCH_VERSIONS)}')
  device = args.torch_device
  if device == 'auto':
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.set_num_threads(args.threads)
  return versions, device


def print_platform(device):
  import torch
  print(f'jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device); '
        f'torch {torch.__version__} on {device}, {torch.get_num_threads()} threads; '
        f'cores {default_threads()}; allocator: {allocator()}; load average {load_average()}')


def against_versions(run_jax, jax_params, build, versions, rounds, steps):
  """Warms up each torch version (`build(version) -> (step(i) -> loss, model)`), alternates
  them with JAX and reports the ratio against the fastest.

  Returns {'jax_s_per_step', 'torch_<version>_s_per_step', ..., 'ratio', 'flops'}.
  """
  runs, flops = {'jax': run_jax}, None
  for v in versions:
    step, model = build(v)
    run, seconds, counted, (loss, _) = warm_up_torch(step)
    flops = flops or counted
    n = sum(p.numel() for p in model.parameters())
    print(f'torch {v}: warm-up 2 steps {seconds:.2f} s; flop count '
          f'{counted / 1e9:.4g} GFLOP/step; {n} parameters'
          f'{"" if n == jax_params else " (DIFFERENT FROM JAX)"}; first loss {float(loss):.4f}')
    runs[f'torch_{v}'] = run
  med = time_rounds(runs, rounds, steps, digits=4)
  print_table(med, flops, 'GFLOP/s (torch count)', name_width=14, digits=4)
  best = min((k for k in med if k != 'jax'), key=med.get)
  ratio = med[best] / med['jax']   # (1 / jax s/step) / (1 / torch s/step)
  print(f'against the faster torch version: {best}')
  print(f'ratio={ratio:.3f}')
  return {'jax_s_per_step': med['jax'], 'ratio': ratio, 'flops': flops,
          **{f'{k}_s_per_step': med[k] for k in med if k != 'jax'}}
