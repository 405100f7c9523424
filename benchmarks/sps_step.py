"""One SPS training step: JAX (this codebase) against a PyTorch twin, on CPU.

Run from the repository root:

    python -m benchmarks.sps_step [--batch 32] [--frames 20] [--steps 3] [--rounds 3]
                                  [--conv_impl auto] [--prior_width 256]

What it measures: the wall time of one full training step (encode B*T frames,
reparameterise, self-reconstruction, KL, then for each of the identity, T and R paths
one unroll of the Elman prior over T-1 steps with scheduled sampling and B*(T-4) decoded
frames; gradients of everything; global-norm clipping; Adam) at the released recipe's
sizes: `configs/sps.py:bouncing_ball` with batch 32, 20 frames, prior width 256 and
symmetry.mode='each': 640 frames encoded and 640 + 3 * 512 = 2176 decoded, about 100
GFLOP forward and 300 GFLOP per step with the backward pass (XLA's estimate and torch's
FlopCounterMode, both printed, agree on this).

  * JAX: the task's own `train_step` from `sps.train.make_task`, jitted with state donation
    and the shardings exactly as `common/loop.py` does, each step's batch put on the device
    as the loop does (the frames are synthetic, uniform in [0, 1], not the dataset).
  * PyTorch: `benchmarks/torch_sps.py`, the same architecture and loss at the same sizes
    (channels-last convolutions via oneDNN, a little faster on CPU than NCHW, which
    `--torch_nchw` selects), `torch.set_num_threads` set to the cores JAX uses
    (`--threads`, default: the CPUs this process may run on).

Both are warmed up (JAX: compiled, its compile time reported; XLA's flop estimate for the
step is printed too), then alternated in one process: each of `--rounds` rounds times
`--steps` JAX steps (block_until_ready at the end) and then `--steps` torch steps. The
median s/step over the rounds is reported for each, and the last line is

    ratio=<JAX steps/s / torch steps/s>

above 1 means JAX trains faster than PyTorch, below 1 slower (0.5: half the speed).

Both sides run in the same process, so they share one malloc. PyTorch is sensitive to
the allocator; to run both under jemalloc (Debian: apt-get install libjemalloc2):

    LD_PRELOAD=$(ls /usr/lib/x86_64-linux-gnu/libjemalloc.so.2) python -m benchmarks.sps_step

The allocator in use is printed. Other load on the machine makes both numbers noisy;
the alternation keeps the ratio fair, not the absolute times.
"""
import argparse
from unittest import mock

import jax
import numpy as np

from benchmarks import harness
from common import conv
from configs import sps as sps_configs
from sps import train as sps_train


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--frames', type=int, default=20)
  p.add_argument('--steps', type=int, default=3, help='steps of each framework per round')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--conv_impl', default='auto', choices=('auto', 'matmul', 'lax', 'hybrid'))
  p.add_argument('--prior_width', type=int, default=256)
  p.add_argument('--enc_channels', default='64,128,256', help='comma-separated')
  p.add_argument('--dec_channels', default='256,128,64', help='comma-separated')
  p.add_argument('--threads', type=int, default=harness.default_threads(),
                 help='torch.set_num_threads (default: the CPUs this process may run on)')
  p.add_argument('--torch_nchw', action='store_true',
                 help='run the torch twin in plain NCHW instead of channels-last')
  p.add_argument('--seed', type=int, default=0)
  return p.parse_args(argv)


def _ints(s):
  return tuple(int(v) for v in s.split(','))


def make_config(batch=32, frames=20, prior_width=256, conv_impl='auto',
                enc_channels=(64, 128, 256), dec_channels=(256, 128, 64), seed=0):
  c = sps_configs.get_config('bouncing_ball')
  c.seed = seed
  c.batch_size = batch
  c.data.num_frames = frames
  c.data.num_train = batch
  c.data.num_eval = batch
  c.model.prior_width = prior_width
  c.model.enc_channels = tuple(enc_channels)
  c.model.dec_channels = tuple(dec_channels)
  c.symmetry.mode = 'each'
  c.model.dec_mean_init = False     # the released architecture (the twin has no pixel bias)
  c.loss.pred_warmup = 0            # nor a warm-up: the twin weighs its prediction terms fully
  c.conv_impl = conv_impl
  sps_train.validate(c)
  return c


def synthetic_frames(config, n=None, seed=0):
  """(n, T, 32, 32, 3) float32 uniform in [0, 1]."""
  n = n or config.batch_size
  rng = np.random.default_rng(seed)
  return rng.random((n, config.data.num_frames) + sps_train.IMAGE_SHAPE, dtype=np.float32)


def build_jax(config, frames):
  """The jitted train step as common/loop.py builds it, its initial state and its batches.

  The task is `sps.train.make_task(config)` with its data replaced by `frames`.
  Returns (step_fn, state, batch_fn(step) -> device batch, loop_key, model).
  """
  fake = lambda config, split: {'frames': frames,
                                'positions': np.zeros(frames.shape[:2] + (2,), np.float32)}
  with mock.patch.object(sps_train, 'load_data', fake):
    task = sps_train.make_task(config)
  step_fn, state, put, loop_key = harness.jit_like_loop(task, config)
  return step_fn, state, lambda step: put(task.train_batch(step)), loop_key


def build_torch(config, frames, channels_last=True, seed=0):
  """(step(i) -> loss, model) for the PyTorch twin on `frames`."""
  import torch
  from benchmarks import torch_sps
  torch.manual_seed(seed)
  model = torch_sps.from_config(config, channels_last=channels_last)
  opt = torch_sps.make_optimizer(model, config)
  x = torch.from_numpy(frames)
  gen = torch.Generator().manual_seed(seed)
  step = lambda i: torch_sps.train_step(model, opt, config, x, i, gen)
  return step, model


def main(argv=None):
  args = parse_args(argv)
  import torch
  torch.set_num_threads(args.threads)
  config = make_config(args.batch, args.frames, args.prior_width, args.conv_impl,
                       _ints(args.enc_channels), _ints(args.dec_channels), args.seed)
  frames = synthetic_frames(config, seed=args.seed)
  print(f'SPS train step: batch {args.batch}, {args.frames} frames, prior width '
        f'{args.prior_width}, enc {args.enc_channels}, dec {args.dec_channels}, '
        f'symmetry paths identity + {config.symmetry.spec} (mode each)')
  print(f'jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device), '
        f'conv_impl={args.conv_impl} -> {conv.resolve_impl(args.conv_impl)}; '
        f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
        f'{"NCHW" if args.torch_nchw else "channels-last"}; cores {harness.default_threads()}; '
        f'allocator: {harness.allocator()}')

  step_fn, state, batch_fn, key = build_jax(config, frames)
  run_jax, flops, _ = harness.warm_up_jax(step_fn, state, batch_fn, key)
  torch_step, tmodel = build_torch(config, frames, not args.torch_nchw, args.seed)
  from benchmarks import torch_sps
  run_torch, seconds, counted, (_, loss) = harness.warm_up_torch(torch_step)
  print(f'torch: warm-up 2 steps {seconds:.2f} s; flop count '
        f'{counted / 1e9:.4g} GFLOP/step; '
        f'{torch_sps.num_params(tmodel)} parameters; loss {float(loss):.4f}')

  return harness.against_one_twin(run_jax, run_torch, args.rounds, args.steps, flops,
                                  'GFLOP/s (XLA est.)', digits=3)


if __name__ == '__main__':
  main()
