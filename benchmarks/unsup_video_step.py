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
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from configs import unsup_video as uv_configs
from unsup_video import data as mm
from unsup_video import train as uv_train

VARIANTS = tuple(v for v in uv_configs.VARIANTS if v != 'conv')   # the twin is flat only
NUM_DIGITS = 128   # embedded digits rendered for the fixed batch (one compiled chunk)


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
  harness.add_version_args(p)
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
  step_fn, state, put, loop_key = harness.jit_like_loop(task, config)
  on_device = put({'frames': jnp.asarray(frames)})
  return step_fn, state, lambda step: put(on_device), loop_key


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
  versions, device = harness.set_up_torch(args)
  config = make_config(args.variant, args.batch, args.hidden, args.layers,
                       False if args.unconditional else None, args.canvas, args.num_frames,
                       args.num_input, args.seed)
  frames, digits = synthetic_data(config, seed=args.seed)
  print(f'unsup_video train step ({args.variant}): {describe(config)}')
  harness.print_platform(device)

  step_fn, state, batch_fn, key = build_jax(config, frames, digits)
  init_params = jax.device_get(state.params)   # before donation: the torch twins start here
  run_jax, _, jax_params = harness.warm_up_jax(step_fn, state, batch_fn, key,
                                               ' (each scan body counted once)')
  build = lambda v: build_torch(config, frames, init_params, v == 'naive', device, args.seed)
  return harness.against_versions(run_jax, jax_params, build, versions, args.rounds, args.steps)


if __name__ == '__main__':
  main()
