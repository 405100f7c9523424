"""The config fields every project shares: those of the training loop (common/loop.py), checked
by common.loop.check_fields. A config file is loaded by path (`configs/sps.py:variant`) with the
repository root on the path, so it imports this one as `from configs import common`.
"""
import ml_collections


# The conv models' YNNPACK ops: only reductions, their convolutions and dots on XLA's own
# Eigen kernels (README, Benchmarks; benchmarks/conv.py compiles with it too).
CONV_YNN_FUSION_TYPES = 'reduce'


def loop_fields(c, num_steps, batch_size, eval_every, checkpoint_every, early_stopping_mode,
                log_update_norm=None, conv_impl=True, cpu_fusion_emitters=True,
                cpu_ynn_fusion_types=''):
  """Sets the loop's fields on config `c` in place and returns it.

  log_update_norm: None leaves the field out (a project that always logs update_norm);
  conv_impl: False leaves out conv_impl (a project without convolutions, see common/conv.py).
  cpu_fusion_emitters, cpu_ynn_fusion_types: the defaults of `xla_cpu_fusion_emitters` and
  `xla_cpu_ynn_fusion_types` (see common.loop.compiler_options).
  """
  c.seed = 0
  c.num_steps = num_steps
  c.batch_size = batch_size
  c.log_every = 50
  c.eval_every = eval_every
  c.eval_at_end = True
  c.progress_bar = True
  c.profile = ''                 # 'START:STOP': jax.profiler trace of those steps, in workdir/profile
  if log_update_norm is not None:
    c.log_update_norm = log_update_norm
  if conv_impl:
    c.conv_impl = 'auto'         # common/conv.py: 'auto' (per layer on CPU, lax elsewhere), 'matmul', 'lax', 'hybrid'
  # False: XLA's older CPU fusion codegen for the jitted init and train step: the compiler's
  # peak memory ~300 MiB lower, steps 0-20% slower by project (README, Benchmarks)
  c.xla_cpu_fusion_emitters = cpu_fusion_emitters
  # Which ops XLA hands to YNNPACK on CPU: '' = XLA's default (dots, convolutions, reductions);
  # 'reduce': the dots and convolutions on XLA's own Eigen kernels instead (the conv models'
  # steps 1.05-1.3x faster, the LSTM models' 1.1-1.7x slower; README, Benchmarks)
  c.xla_cpu_ynn_fusion_types = cpu_ynn_fusion_types
  c.checkpoint = ml_collections.ConfigDict(dict(every=checkpoint_every, max_to_keep=3))
  c.early_stopping = ml_collections.ConfigDict(
      dict(metric='', mode=early_stopping_mode, patience=5, min_delta=0.0))   # metric '' = off
  return c


def smoke_steps(c, num_steps, log_every, every):
  """A smoke run's steps: it logs every `log_every` and evaluates and checkpoints every `every`."""
  c.num_steps = num_steps
  c.log_every = log_every
  c.eval_every = every
  c.checkpoint.every = every
