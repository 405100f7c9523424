"""One vle training step: JAX (this codebase) against a PyTorch twin.

Run from the repository root:

    python -m benchmarks.vle_step [--variant vanilla] [--steps 5] [--rounds 3] [--batch N]
                                  [--size N] [--tokens N] [--conv_impl lax]
                                  [--torch nchw,nhwc]

What it measures: the wall time of one full training step of a `configs/vle.py` variant
(default `vanilla`: batch 32 images of 64x64; 6 token steps (tokens.train_max), each
normalising the residual, encoding it (k4 s2 convs 32, 64, 64 with a ConvLSTM of 32 after
the first) to a 4-channel 8x8 token and decoding it (3x3 conv 64, transposed convs 64, 32,
3); the reconstruction loss over the active tokens and the final one (plus the mask losses
for `saliency` and `inherent`); the baseline VAE of the same parameter count on the same
batch; gradients of everything; each model's gradients clipped by their global norm; Adam).
`--batch`, `--size` and `--tokens` change the sizes, `--conv_impl` the JAX convolutions (the
config's 'auto': im2col matmuls on CPU, where XLA's own convolutions are far slower, and
`lax` elsewhere).

The data are synthetic and fixed: pixels ~ U(0, 1), and token counts
1 + Binomial(train_max - 1, p) as the task samples them at step 0. The step's work does not
depend on them (every image runs all train_max token steps), and neither side times the
scene generator (the loop's `train_batch` draws a new batch of scenes on the device at each
step):

  * JAX: the task's own `train_step` from `vle.train.make_task`, jitted with state
    donation and the shardings exactly as `common/loop.py` does; each step's batch is put
    on the device with the batch sharding as the loop does.
  * PyTorch: `benchmarks/torch_vle.py`, the same models, loss and optimiser at the same
    sizes, starting from the same weights, in two versions: 'nchw' (torch's default layout)
    and 'nhwc' (the model and images in torch.channels_last, oneDNN's preferred layout).
    On CPU `torch.set_num_threads` is set to the cores JAX uses (`--threads`, default: the
    CPUs this process may run on); on a GPU torch runs on cuda (`--torch_device`). Its VAE
    noise is its own; the 'first loss' printed for each side is the JAX step's `loss`
    metric, the VLE's loss alone (the baseline's is `baseline_loss`), which does not
    depend on that noise, so all sides print the same.

Both are warmed up (JAX: compiled, its compile time reported; torch: the conv flops of a
step counted by FlopCounterMode, forward and backward; XLA's estimate, also printed, counts
the token scan body once), then alternated in one process: each of `--rounds` rounds times
`--steps` JAX steps (block_until_ready at the end) and then `--steps` steps of each torch
version. The median s/step over the rounds is reported for each, and the last line is

    ratio=<JAX steps/s / torch steps/s>

against the faster torch version: above 1 means JAX trains faster than PyTorch.

Both sides run in the same process, so they share one malloc. To run both under jemalloc
(Debian: apt-get install libjemalloc2):

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python -m benchmarks.vle_step

The allocator and the load average are printed. Other load on the machine makes both
numbers noisy, torch's threads the most; compare on an idle machine. The alternation keeps
the ratio fair against slow drifts, not against that.
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from common import conv
from configs import vle as vle_configs
from vle import train as vle_train

TORCH_VERSIONS = ('nchw', 'nhwc')


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--variant', default='vanilla', choices=vle_configs.VARIANTS)
  p.add_argument('--batch', type=int, default=0, help='0: the variant\'s batch_size')
  p.add_argument('--size', type=int, default=0, help='0: the variant\'s data.size')
  p.add_argument('--tokens', type=int, default=0, help='0: the variant\'s tokens.train_max')
  p.add_argument('--conv_impl', default='', choices=('', 'auto', 'matmul', 'lax', 'hybrid'),
                 help='the JAX convolutions (common/conv.py); \'\': the config\'s (auto)')
  p.add_argument('--steps', type=int, default=5, help='steps of each framework per round')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--torch', default=','.join(TORCH_VERSIONS),
                 help='comma-separated torch versions to time (nchw, nhwc)')
  p.add_argument('--torch_device', default='auto', help="'auto': cuda if available, else cpu")
  p.add_argument('--threads', type=int, default=harness.default_threads(),
                 help='torch.set_num_threads (default: the CPUs this process may run on)')
  p.add_argument('--seed', type=int, default=0)
  return p.parse_args(argv)


def make_config(variant='vanilla', batch=0, size=0, tokens=0, conv_impl='', seed=0):
  """The variant's config at the benchmark's sizes; its data source 'scenes' loads nothing."""
  c = vle_configs.get_config(variant)
  c.seed = seed
  c.conv_impl = conv_impl or c.conv_impl
  c.batch_size = batch or c.batch_size
  c.data.source = 'scenes'
  c.data.size = size or c.data.size
  t = c.tokens
  t.train_max = tokens or t.train_max
  t.mean_start, t.mean_end = min(t.mean_start, t.train_max), min(t.mean_end, t.train_max)
  vle_train.validate(c)
  return c


def synthetic_data(config, seed=0):
  """{'image': (B, H, W, 3) float32 ~ U(0, 1), 'count': (B,) int32 in [1, tokens.train_max]},
  the counts drawn as `vle.train.sample_counts` draws them at step 0."""
  b, size, t = config.batch_size, config.data.size, config.tokens
  rng = np.random.default_rng(seed)
  p = (t.mean_start - 1.0) / max(t.train_max - 1, 1)
  return {'image': rng.random((b, size, size, 3), dtype=np.float32),
          'count': (1 + rng.binomial(t.train_max - 1, p, b)).astype(np.int32)}


def build_jax(config, data):
  """The jitted train step as common/loop.py builds it, its initial state and its batches.

  The task is `vle.train.make_task(config)`; its batches are the fixed `data`.
  Returns (step_fn, state, batch_fn(step) -> device batch, loop_key).
  """
  task = vle_train.make_task(config)
  step_fn, state, put, loop_key = harness.jit_like_loop(task, config)
  on_device = put({k: jnp.asarray(v) for k, v in data.items()})
  return step_fn, state, lambda step: put(on_device), loop_key


def build_torch(config, data, params=None, version='nchw', device='cpu', seed=0):
  """(step(i) -> loss, model) for the PyTorch twin on `data`, from the JAX state's `params`
  ({'vle': ..., 'baseline': ...}) if given; version 'nchw' or 'nhwc' (channels_last)."""
  import torch
  from benchmarks import torch_vle
  torch.manual_seed(seed)
  twin = torch_vle.from_config(config)
  if params is not None:
    torch_vle.load_flax_params(twin, params)
  twin = twin.to(device)
  images = torch.from_numpy(data['image']).to(device).permute(0, 3, 1, 2)   # NHWC in memory
  if version == 'nhwc':
    twin = twin.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
  else:
    images = images.contiguous()
  count = torch.from_numpy(data['count']).to(device, torch.int64)
  opt = torch_vle.make_optimizer(twin, config.optim)
  gen = torch.Generator(device=device).manual_seed(seed)
  sync = torch.cuda.synchronize if str(device).startswith('cuda') else (lambda: None)

  def step(i):
    loss = torch_vle.train_step(twin, opt, images, count, config.optim.grad_clip, gen=gen)
    sync()
    return loss

  return step, twin


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


def describe(config):
  m, d, t = config.model, config.data, config.tokens
  n = len(m.channels)
  head = {'vanilla': 'mask 1', 'inherent': 'mask from a 4th decoder channel',
          'saliency': f'saliency head {m.saliency_features}' +
                      (' with memory' if m.saliency_memory else '')}[m.kind]
  baseline = (f'baseline VAE x{vle_train.baseline_scale(config):.3f} widths'
              if config.baseline.enabled else 'no baseline')
  return (f'batch {config.batch_size} x {d.size}x{d.size} images, {t.train_max} token steps; '
          f'encoder {tuple(m.channels)} + ConvLSTM {m.memory}, token {m.token_channels} x '
          f'{d.size // 2 ** n}x{d.size // 2 ** n}, decoder {tuple(m.decoder_channels)}; '
          f'{m.kind} ({head}); {baseline}; Adam lr {config.optim.lr}, weight decay '
          f'{config.optim.weight_decay}, clip {config.optim.grad_clip} per model; JAX convs '
          f'{config.conv_impl} ({conv.resolve_impl(config.conv_impl)})')


def main(argv=None):
  args = parse_args(argv)
  versions, device = set_up_torch(args)
  config = make_config(args.variant, args.batch, args.size, args.tokens, args.conv_impl,
                       args.seed)
  data = synthetic_data(config, seed=args.seed)
  print(f'vle train step ({args.variant}): {describe(config)}; mean token count '
        f'{data["count"].mean():.2f} (every image runs all {config.tokens.train_max} steps)')
  harness.print_platform(device)

  step_fn, state, batch_fn, key = build_jax(config, data)
  init_params = jax.device_get(state.params)   # before donation: the torch twins start here
  run_jax, _, jax_params = harness.warm_up_jax(step_fn, state, batch_fn, key,
                                               ' (the token scan body counted once)')
  build = lambda v: build_torch(config, data, init_params, v, device, args.seed)
  out = harness.against_versions(run_jax, jax_params, build, versions, args.rounds, args.steps)
  out['torch_s_per_step'] = min(out[f'torch_{v}_s_per_step'] for v in versions)
  return out


if __name__ == '__main__':
  main()
