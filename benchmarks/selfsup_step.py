"""One selfsup training step: JAX (this codebase) against a PyTorch twin.

Run from the repository root:

    python -m benchmarks.selfsup_step [--variant mixup] [--steps 5] [--rounds 3] [--batch N]
                                      [--size N] [--widths 32,64,128] [--blocks 1,1,1]
                                      [--norm group|batch] [--torch_nchw]

What it measures: the wall time of one full training step of a `configs/selfsup.py` variant
at its sizes (default `mixup`, the default config: batch 64 mixtures, each with its 3
candidates, so 256 images of 32x32 through the ResNet encoder (widths 32, 64, 128, one
block each, stem stride 2, GroupNorm) in one call, the projection MLP 128 -> 128 (BatchNorm)
-> 64 on all of them, the siamese MLP head on the 192 [q * c, |q - c|] pairs (128 -> 128
(BatchNorm) -> 1), BCE on which candidates were mixed; gradients of everything; global-norm
clipping; AdamW with a linear warm-up). The other pretext variants (scale, quadrant,
patchwork, simclr) and `finetune` (a classifier, the whole model trained; encoder from
scratch) are twinned too; `--batch`, `--size`, `--widths`, `--blocks` and `--norm` change
the sizes.

The images are a fixed pool of uniform uint8 noise. Both sides train on one fixed batch, made
once by the task's own generator with `overfit_one_batch=True` (`train_batch` of
`selfsup.train.make_task`: sampling and the pretext transform, augmentation off; the flag
changes nothing else), so neither times the generator, which the training loop runs on the
device before each step:

  * JAX: the task's own `train_step`, jitted with state donation and the shardings exactly as
    `common/loop.py` does; each step's batch is put on the device with the batch sharding as
    the loop does.
  * PyTorch: `benchmarks/torch_selfsup.py`, the same model, loss and optimizer at the same
    sizes, starting from the same weights and BatchNorm statistics, in eager mode with
    channels-last convolutions (`--torch_nchw`: plain NCHW). On CPU `torch.set_num_threads`
    is set to the cores JAX uses (`--threads`, default: the CPUs this process may run on); on
    a GPU torch runs on cuda (`--torch_device`).

Both are warmed up (JAX: compiled, its compile time and XLA's flop estimate reported; torch:
the convolution and matmul flops of a step counted by FlopCounterMode, forward and backward),
then alternated in one process: each of `--rounds` rounds times `--steps` JAX steps
(block_until_ready at the end) and then `--steps` torch steps. The median s/step over the
rounds is reported for each, and the last line is

    ratio=<JAX steps/s / torch steps/s>

above 1 means JAX trains faster than PyTorch. Both start from the same loss (printed).

Both sides run in the same process, so they share one malloc. To run both under jemalloc
(Debian: apt-get install libjemalloc2):

    LD_PRELOAD=$(ls /usr/lib/x86_64-linux-gnu/libjemalloc.so.2) python -m benchmarks.selfsup_step

The allocator and the load average are printed. Other load on the machine makes both numbers
noisy, and on CPU it hurts torch far more than XLA (every torch op is a parallel region whose
threads all have to be scheduled): at the default sizes on 2 cores with a load of 10, torch
took 1.1 to 2.5 s/step with 2 threads and 0.26 s/step with `--threads 1`, JAX 0.8 to 1.4.
Compare on an idle machine; the alternation keeps the ratio fair against slow drifts, not
against that. A step at the default sizes is about 19 GFLOP (forward and backward; XLA's
estimate and torch's count agree): about a second or less on 2 cores.
"""
import argparse
from unittest import mock

import jax
import numpy as np

from benchmarks import harness
from configs import selfsup as ss_configs
from selfsup import data as ss_data
from selfsup import evaluation as ss_evaluation
from selfsup import losses as ss_losses
from selfsup import pretext
from selfsup import train as ss_train

VARIANTS = ss_configs.PRETEXT + ('finetune',)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--variant', default='mixup', choices=VARIANTS)
  p.add_argument('--batch', type=int, default=0, help='0: the variant\'s batch_size')
  p.add_argument('--size', type=int, default=0, help='0: the variant\'s data.size')
  p.add_argument('--widths', default='', help='comma-separated; empty: the variant\'s')
  p.add_argument('--blocks', default='',
                 help='comma-separated; empty: the variant\'s (one per stage if --widths '
                      'changes the number of stages)')
  p.add_argument('--norm', default='', choices=('', 'group', 'batch'),
                 help='the encoder\'s norm; empty: the variant\'s')
  p.add_argument('--conv_impl', default='', choices=('', 'auto', 'matmul', 'lax', 'hybrid'),
                 help='the JAX convolutions (common/conv.py); empty: the config\'s (auto)')
  p.add_argument('--steps', type=int, default=5, help='steps of each framework per round')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--torch_device', default='auto', help="'auto': cuda if available, else cpu")
  p.add_argument('--torch_nchw', action='store_true',
                 help='run the torch twin in plain NCHW instead of channels-last')
  p.add_argument('--threads', type=int, default=harness.default_threads(),
                 help='torch.set_num_threads (default: the CPUs this process may run on)')
  p.add_argument('--seed', type=int, default=0)
  return p.parse_args(argv)


def _ints(s):
  return tuple(int(v) for v in s.split(',')) if s else ()


def make_config(variant='mixup', batch=0, size=0, widths=(), blocks=(), norm='', conv_impl='',
                seed=0):
  """The variant's config at the benchmark's sizes (0 / empty: the variant's own), training
on one fixed batch; pretext.patch_size is capped at half the image size."""
  c = ss_configs.get_config(variant)
  c.seed = seed
  c.conv_impl = conv_impl or c.conv_impl
  c.batch_size = batch or c.batch_size
  c.data.size = size or c.data.size
  m = c.model
  if widths:
    blocks = blocks or (m.blocks if len(m.blocks) == len(widths) else (1,) * len(widths))
    m.widths = tuple(widths)
  m.blocks = tuple(blocks or m.blocks)
  m.norm = norm or m.norm
  c.pretext.patch_size = min(c.pretext.patch_size, c.data.size // 2)
  c.overfit_one_batch = True   # one unaugmented batch: the generator's cost stays out
  ss_train.validate(c)
  return c


def synthetic_images(config, seed=0):
  """(uint8 images (N, size, size, 3) of uniform noise, labels (N,)): a pool with as many
  images as one batch draws."""
  n = config.batch_size * pretext.candidates_per_example(config.task, config)
  rng = np.random.default_rng(seed)
  s = config.data.size
  return (rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8),
          rng.integers(0, ss_data.NUM_CLASSES, (n,), dtype=np.int32))


class _NoEvaluator:
  """Stands in for `selfsup.evaluation.Evaluator`, which compiles its own batch; never run here."""

  def __init__(self, *args):
    self.metrics = None


def make_task(config, images, labels):
  """`selfsup.train.make_task(config)` on the pool `images` (and `labels`), no evaluator."""
  data = {'train': (images, labels), 'val': (images[:1], labels[:1]), 'unlabelled': images,
          'num_classes': ss_data.NUM_CLASSES, 'source': 'uniform noise'}
  with mock.patch.object(ss_evaluation, 'Evaluator', _NoEvaluator):
    return ss_train.make_task(config, data)


def build_jax(config, images, labels):
  """The jitted train step as common/loop.py builds it, its initial state and its batches.

  Returns (step_fn, state, batch_fn(step) -> device batch, loop_key, the fixed batch as
  numpy arrays: the task's own batch of step 0)."""
  task = make_task(config, images, labels)
  step_fn, state, put, loop_key = harness.jit_like_loop(task, config)
  batch = jax.tree.map(np.array, task.train_batch(0))
  on_device = put(batch)
  return step_fn, state, lambda step: put(on_device), loop_key, batch


def build_torch(config, batch, variables=None, device='cpu', channels_last=True, seed=0):
  """(step(i) -> loss, model) for the PyTorch twin on `batch`, from the flax `variables`
  ({'params', 'batch_stats'}) if given."""
  import torch
  from benchmarks import torch_selfsup as tss
  from benchmarks import torch_selfsup_weights as tsw
  torch.manual_seed(seed)
  model = tss.from_config(config, ss_data.NUM_CLASSES, channels_last)
  if variables is not None:
    tsw.load_flax_params(model, variables)
  model = model.to(device)
  opt = tss.make_optimizer(model, config)
  tbatch = tss.to_torch_batch(batch, device)
  sync = torch.cuda.synchronize if str(device).startswith('cuda') else (lambda: None)

  def step(i):
    loss = tss.train_step(model, opt, tbatch, config)
    sync()
    return loss

  return step, model


def describe(config):
  m, h, p, o = config.model, config.head, config.pretext, config.optim
  t, b, s = config.task, config.batch_size, config.data.size
  per = pretext.candidates_per_example(t, config)
  images = {'mixup': b * (1 + per), 'scale': b * (1 + per), 'simclr': 2 * b}.get(t, b)
  proj = ' -> '.join(map(str, (m.widths[-1],) + tuple(m.projection)))
  bn = ' (BatchNorm)' if h.batch_norm else ''
  if t in ('mixup', 'scale'):
    kind = ss_losses.loss_kind(config)
    head = (f'projection {proj}{bn}; siamese {h.kind} head on {b * per} pairs'
            + (f' (hidden {tuple(h.hidden)}{bn})' if h.kind == 'mlp' else '') +
            f'; loss {kind}' + (f' ({p.num_mixed} of {per} mixed)' if t == 'mixup' else ''))
  elif t == 'simclr':
    head = f'projection {proj}{bn}; NT-Xent (temperature {p.temperature})'
  else:
    hidden = tuple(config.finetune.hidden if t == 'classify' else h.hidden)
    head = f'MLP head (hidden {hidden}{bn if hidden else ""}); ' + (
        'BCE' if t == 'patchwork' else 'softmax cross-entropy')
  return (f'batch {b} ({images} images of {s}x{s} through the encoder); ResNet widths '
          f'{tuple(m.widths)}, blocks {tuple(m.blocks)}, stem stride {m.stem_stride}, '
          f'{m.norm} norm; {head}; clip {o.grad_clip}, AdamW (lr {o.lr}, warm-up '
          f'{o.warmup_steps}, weight decay {o.weight_decay})')


def main(argv=None):
  args = parse_args(argv)
  import torch
  device = args.torch_device
  if device == 'auto':
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.set_num_threads(args.threads)
  config = make_config(args.variant, args.batch, args.size, _ints(args.widths),
                       _ints(args.blocks), args.norm, args.conv_impl, args.seed)
  images, labels = synthetic_images(config, args.seed)
  print(f'selfsup train step ({args.variant}): {describe(config)}')
  harness.print_platform(device)
  layout = 'NCHW' if args.torch_nchw else 'channels-last'

  step_fn, state, batch_fn, key, batch = build_jax(config, images, labels)
  # copied before the state is donated: the twin starts from these
  variables = jax.tree.map(np.array, {'params': state.params, 'batch_stats': state.batch_stats})
  run_jax, xla_flops, jax_params = harness.warm_up_jax(step_fn, state, batch_fn, key)
  step, model = build_torch(config, batch, variables, device, not args.torch_nchw, args.seed)
  run_torch, seconds, counted, (loss, _) = harness.warm_up_torch(step)
  n = sum(p.numel() for p in model.parameters())
  print(f'torch ({layout}): warm-up 2 steps {seconds:.2f} s; flop count '
        f'{counted / 1e9:.4g} GFLOP/step; {n} parameters'
        f'{"" if n == jax_params else " (DIFFERENT FROM JAX)"}; first loss {float(loss):.4f}')

  flops, label = (counted, 'GFLOP/s (torch count)') if counted else (xla_flops,
                                                                      'GFLOP/s (XLA est.)')
  return harness.against_one_twin(run_jax, run_torch, args.rounds, args.steps, flops, label,
                                  digits=4)


if __name__ == '__main__':
  main()
