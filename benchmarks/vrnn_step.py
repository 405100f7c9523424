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
from unittest import mock

import jax
import numpy as np

from benchmarks import harness
from configs import vrnn as vrnn_configs
from vrnn import train as vrnn_train


BENCH_VARIANTS = tuple(v for v in vrnn_configs.VARIANTS if v != 'npz')   # no data file needed


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--variant', default='handwriting', choices=BENCH_VARIANTS)
  p.add_argument('--batch', type=int, default=0, help='0: the variant\'s batch_size')
  p.add_argument('--max_len', type=int, default=0, help='0: the variant\'s data.max_len')
  harness.add_version_args(p)
  return p.parse_args(argv)


def make_config(variant='handwriting', batch=0, max_len=0, seed=0):
  """The variant's config with the benchmark's batch and length; its data become synthetic."""
  if variant == 'npz':
    raise ValueError("the npz variant's shapes come from a data file: time a variant of the "
                     'same sizes instead')
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
  with mock.patch.object(vrnn_train, 'load_data', lambda config, split, stats=None: host):
    task = vrnn_train.make_task(config)
  step_fn, state, put, loop_key = harness.jit_like_loop(task, config)
  return step_fn, state, lambda step: put(task.train_batch(step)), loop_key


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
                                 gen=gen, free_bits=config.loss.free_bits)
    sync()
    return loss

  return step, model


def main(argv=None):
  args = parse_args(argv)
  versions, device = harness.set_up_torch(args)
  config = make_config(args.variant, args.batch, args.max_len, args.seed)
  data = synthetic_data(config, seed=args.seed)
  m = config.model
  print(f'VRNN train step ({args.variant}): batch {config.batch_size} x {config.data.max_len} '
        f'steps ({int(data["mask"].sum())} real), x_dim {vrnn_train.x_dim(config)}, '
        f'{m.cell} {m.h_dim}, phi_x {m.phi_x_dim}, phi_z {m.phi_z_dim}, MLPs '
        f'{m.layers} x {m.hidden_dim}, z {m.z_dim}, prior {m.prior}, latent {m.latent}, '
        f'output {m.output}' + (f' (k={m.num_mixtures})' if m.output == 'gmm' else '') +
        (' + pen bit' if m.pen_bit else ''))
  harness.print_platform(device)

  step_fn, state, batch_fn, key = build_jax(config, data)
  init_params = jax.device_get(state.params)   # before donation: the torch twins start here
  run_jax, _, jax_params = harness.warm_up_jax(step_fn, state, batch_fn, key,
                                               ' (the scan body counted once)')
  build = lambda v: build_torch(config, data, init_params, v == 'naive', device, args.seed)
  return harness.against_versions(run_jax, jax_params, build, versions, args.rounds, args.steps)


if __name__ == '__main__':
  main()
