"""The training loop every project shares.

A project hands over a `Task` of pure functions; `train` creates or resumes the run in a
workdir, checkpoints it, logs it, evaluates it and stops cleanly on a signal or a NaN.
"""
import ctypes
import dataclasses
import math
import os
import signal
import sys
import time
from typing import Any, Callable, Optional

import jax
import numpy as np

from common import checkpoint as ckpt_lib
from common import config as config_lib
from common import conv as conv_lib
from common import distributed
from common import metrics as metrics_lib
from common import sharding

# Fields that may change between a run and its resumption (everything else must match).
RESUMABLE_FIELDS = ('num_steps', 'log_every', 'eval_every', 'checkpoint.every', 'log_update_norm',
                    'checkpoint.max_to_keep', 'progress_bar', 'eval_at_end', 'profile',
                    'xla_cpu_fusion_emitters', 'xla_cpu_ynn_fusion_types')


@dataclasses.dataclass(frozen=True)
class Task:
  """What a project provides. Every function is pure; randomness comes in as keys."""
  init: Callable[[jax.Array], Any]       # key -> train state (a pytree with a `.step` field)
  # (state, batch, key) -> (state, metrics), jitted here; gets the same key every step and
  # must fold in state.step itself.
  train_step: Callable[..., tuple]
  train_batch: Callable[[int], Any]      # step -> host batch; a pure function of the step
  evaluate: Optional[Callable[[Any], dict]] = None  # state -> scalar eval metrics


class NonFiniteError(RuntimeError):
  pass


class _Signals:
  """Turns SIGINT/SIGTERM into a flag the loop polls; a second Ctrl+C aborts at once."""

  def __init__(self):
    self.received = None

  def __enter__(self):
    self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
    return self

  def _handle(self, signum, frame):
    if self.received is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for s, h in self._old.items():
      signal.signal(s, h)


def check_run(config, workdir):
  """The loop's own inputs, checked before any work: the workdir and the profile window."""
  path = os.path.abspath(workdir)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  if not os.path.isdir(path):
    raise config_lib.ConfigError(f'--workdir={workdir}: {path} is a file, not a folder')
  if not os.access(path, os.W_OK):
    raise config_lib.ConfigError(f'--workdir={workdir}: {path} is not writable')
  profile_window(config)


def check_fields(config, num_devices):
  """The loop's config fields (configs/common.py), checked first by every project's validate."""
  if 'conv_impl' in config:
    config_lib.check_choice(config, 'conv_impl', conv_lib.IMPLS)
  config_lib.check_choice(config, 'early_stopping.mode', ('min', 'max'))
  _ynn_fusion_types(config)
  for f in ('num_steps', 'batch_size', 'log_every', 'eval_every', 'checkpoint.every',
            'checkpoint.max_to_keep'):
    config_lib.check_positive(config, f)
  config_lib.check_divisible(config, 'batch_size', num_devices,
                             f'the batch is split over {num_devices} devices')


def profile_window(config):
  """(first, stop) steps of `config.profile='START:STOP'`, or None when it is ''."""
  spec = config.get('profile', '')
  if not spec:
    return None
  parts = str(spec).split(':')
  if len(parts) == 2 and all(p.strip().isdigit() for p in parts) and int(parts[0]) < int(parts[1]):
    return int(parts[0]), int(parts[1])
  raise config_lib.ConfigError(
      f"config.profile={spec!r} is invalid: must be 'START:STOP', two step numbers with "
      "START < STOP, e.g. '10:15'")


class _Profiler:
  """Traces steps [first, stop) with jax.profiler into workdir/profile (TensorBoard / XProf)."""

  def __init__(self, config, workdir):
    self.window, self.dir, self.on = profile_window(config), os.path.join(workdir, 'profile'), False

  def before(self, step):
    if self.window and not self.on and self.window[0] <= step < self.window[1]:
      jax.profiler.start_trace(self.dir)
      self.on, self.first = True, step

  def after(self, step, state):
    if self.on and step >= self.window[1]:
      self.stop(step, state)

  def stop(self, step, state=None):
    if self.on:
      if state is not None:
        jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.on = False
      print(f'\nprofile of steps {self.first}..{step - 1} written to {self.dir} '
            f'(view: tensorboard --logdir={self.dir}, or xprof)')


def run_keys(seed):
  """(init_key, loop_key): a run's one root key from config.seed, split once."""
  return jax.random.split(jax.random.PRNGKey(seed))


# The op kinds XLA's CPU backend can hand to YNNPACK (its LibraryFusionType, lower case).
YNN_FUSION_TYPES = ('dot', 'eltwise', 'reduce', 'individual_dot', 'individual_convolution')


def compiler_options(config):
  """XLA options for the jitted init and train step, from the config's loop fields; on CPU
  only (elsewhere they mean nothing).

  `xla_cpu_fusion_emitters=False` compiles with XLA's older CPU fusion codegen: the newer
  one's compiler holds ~300 MiB more while it compiles a step, which is vrnn's whole peak
  memory; the older one's steps are 0-20% slower (README).
  `xla_cpu_ynn_fusion_types='reduce'` (comma-separated YNN_FUSION_TYPES; '' leaves XLA's
  default) hands YNNPACK only those ops: the conv models' convolutions and dots then run on
  XLA's own Eigen kernels, faster than YNNPACK's at their shapes (README).
  """
  if jax.default_backend() != 'cpu':
    return None
  options = {}
  if not config.get('xla_cpu_fusion_emitters', True):
    options['xla_cpu_use_fusion_emitters'] = False
  ynn = _ynn_fusion_types(config)
  if ynn:
    options['xla_cpu_experimental_ynn_fusion_type'] = ','.join(
        'LIBRARY_FUSION_TYPE_' + t.upper() for t in ynn)
  return options or None


def _ynn_fusion_types(config):
  spec = config.get('xla_cpu_ynn_fusion_types', '')
  types = [t.strip() for t in spec.split(',') if t.strip()]
  bad = [t for t in types if t not in YNN_FUSION_TYPES]
  if bad:
    raise config_lib.ConfigError(
        f'config.xla_cpu_ynn_fusion_types={spec!r} is invalid: {", ".join(map(repr, bad))} '
        f'not among {", ".join(YNN_FUSION_TYPES)} (comma-separated; \'\' = XLA\'s default)')
  return types


def compile_task(task, mesh, options=None):
  """(init, step, put): the task's init and train step jitted as every run uses them, the state
  replicated and donated to the step, the batch sharded over the mesh, both compiled with the
  XLA `options` (compiler_options(config)); put(host batch) places a batch so."""
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  init = jax.jit(task.init, out_shardings=repl, compiler_options=options)
  step = jax.jit(task.train_step, donate_argnums=0, compiler_options=options,
                 in_shardings=(repl, batch_sh, repl), out_shardings=(repl, repl))
  return init, step, lambda batch: jax.device_put(batch, batch_sh)


def release_freed_memory():
  """Hands the memory that malloc holds free back to the OS (glibc's malloc_trim; a no-op
  where there is none)."""
  try:
    ctypes.CDLL('libc.so.6').malloc_trim(0)
  except (OSError, AttributeError):
    pass


def compile_step(step_fn, state, batch, key):
  """Compiles the jitted step for these arguments (its later calls reuse the executable) and
  then releases what the compiler freed, before the step's own temporaries are allocated:
  glibc's malloc would keep it (sps: ~420 MiB) under the step's peak memory."""
  step_fn.lower(state, batch, key).compile()
  release_freed_memory()


def prepare_workdir(config, workdir):
  """Writes config.json, or checks that a resumed run keeps the saved config."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'config.json')
  if os.path.exists(path):
    changed = config_lib.differences(config_lib.to_dict(config_lib.load(workdir)),
                                     config_lib.to_dict(config), ignore=RESUMABLE_FIELDS)
    if changed:
      raise config_lib.ConfigError(
          f'{workdir} holds a run with a different config ({", ".join(changed)}); '
          'use a new --workdir, or change only ' + ', '.join(RESUMABLE_FIELDS))
  if distributed.is_chief():
    config_lib.save(config, workdir)


def _early_stopper(config, workdir, start):
  """(update(eval_metrics) -> bool stop), replaying the evals already logged before `start`."""
  es = config.get('early_stopping')
  if not es or not es.metric:
    return lambda m: False
  sign = 1.0 if es.mode == 'min' else -1.0
  best, waited = [math.inf], [0]

  def update(m):
    if es.metric not in m:
      raise config_lib.ConfigError(
          f'config.early_stopping.metric={es.metric!r} is not an eval metric; '
          f'allowed values are {", ".join(map(repr, sorted(m)))}')
    v = sign * float(m[es.metric])
    if v < best[0] - es.min_delta:
      best[0], waited[0] = v, 0
    else:
      waited[0] += 1
    return waited[0] > es.patience

  for r in metrics_lib.read(workdir, 'eval'):
    if r['step'] <= start and es.metric in r:
      update(r)
  return update


def train(config, workdir, task: Task, mesh=None):
  """Trains `task` to `config.num_steps`, resuming from the newest checkpoint in `workdir`.

  Returns (state, status) with status 'done', 'early_stopped' or 'interrupted:<SIGNAL>'.
  """
  check_run(config, workdir)
  prepare_workdir(config, workdir)
  mesh = mesh or sharding.make_mesh()
  repl = sharding.replicated(mesh)
  init_key, loop_key = run_keys(config.seed)
  init_fn, step_fn, put = compile_task(task, mesh, compiler_options(config))

  abstract_state = jax.eval_shape(task.init, init_key)
  ckpt = ckpt_lib.Checkpointer(workdir, config.checkpoint.max_to_keep)
  state, start = ckpt.restore(ckpt_lib.abstract(abstract_state, repl), set_aside=True)
  if state is None:
    state, start = init_fn(init_key), 0
    print(f'new run in {workdir}')
  else:
    print(f'resuming {workdir} from step {start}')

  writer = (metrics_lib.MetricWriter(workdir, resume_step=start) if distributed.is_chief()
            else metrics_lib.NullWriter())
  should_stop = _early_stopper(config, workdir, start)
  pending, last_good, status = [], start, 'done'
  t_last, n_last = time.time(), start

  window = []   # host metrics of the steps since the last log record

  def flush(step, write):
    """Fetches pending metrics and stops on the first non-finite one; logs their mean if `write`.

    Records are written at multiples of log_every (and the last step) only, so a resumed
    run writes the same records as an uninterrupted one.
    """
    nonlocal pending, window, t_last, n_last
    host = jax.device_get(pending)
    for i, m in enumerate(host):
      bad = sorted(k for k, v in m.items() if not np.all(np.isfinite(v)))
      if bad:
        s = step - len(host) + i + 1
        raise NonFiniteError(
            f'non-finite {", ".join(bad)} at step {s}: training stopped; the last good '
            f'checkpoint (step {last_good}) is kept and nothing after it was saved')
    window, pending = window + host, []
    if not write or not window:
      return {}
    mean = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
    now = time.time()
    mean['steps_per_sec'] = (step - n_last) / max(now - t_last, 1e-9)
    t_last, n_last, window = now, step, []
    writer.write(step, 'train', mean)
    return mean

  from tqdm import tqdm
  bar = tqdm(total=config.num_steps, initial=start, unit='step', dynamic_ncols=True,
             disable=not (config.get('progress_bar', True) and distributed.is_chief()),
             mininterval=1.0,
             file=sys.stderr)
  profiler = _Profiler(config, workdir)
  step = start
  if start < config.num_steps:
    compile_step(step_fn, state, put(task.train_batch(start)), loop_key)
  try:
    with _Signals() as sig:
      while step < config.num_steps:
        profiler.before(step)
        batch = put(task.train_batch(step))
        state, m = step_fn(state, batch, loop_key)
        if pending:   # at most two steps in flight: the bar and signals track real progress
          jax.block_until_ready(pending[-1])
        pending.append(m)
        step += 1
        bar.update(1)
        profiler.after(step, state)
        final = step == config.num_steps
        interrupted = sig.received   # read once: a signal arriving later is handled next step
        eval_due = task.evaluate and (step % config.eval_every == 0 or
                                      (final and config.get('eval_at_end', True)))
        save_due = step % config.checkpoint.every == 0 or final or interrupted
        log_due = step % config.log_every == 0 or final
        if log_due or eval_due or save_due:
          mean = flush(step, write=log_due)
          if mean:
            bar.set_postfix(loss=f'{mean["loss"]:.4g}', refresh=False)
        stop = False
        if eval_due:
          em = task.evaluate(state)
          writer.write(step, 'eval', em)
          stop = should_stop(em)
          if stop:
            status = 'early_stopped'
            print(f'\nearly stopping at step {step}: {config.early_stopping.metric} has not '
                  f'improved for {config.early_stopping.patience} evaluations')
        if save_due or stop:
          ckpt.save(step, state)
          last_good = step
        if interrupted:
          status = f'interrupted:{interrupted}'
          ckpt.wait()
          bar.close()   # before the message, so that the bar is not drawn again under it
          print(f'\n{interrupted} received: checkpoint saved at step {step}; '
                'run the same command again to resume')
          break
        if stop:
          break
  finally:
    profiler.stop(step)
    bar.close()
    writer.close()
    ckpt.close()   # waits for the save in flight
  return state, status


def restore(workdir, init, seed, step=None):
  """The state saved in `workdir` at `step` (default: newest), for evaluation. Returns (state, step)."""
  init_key, _ = run_keys(seed)
  repl = sharding.replicated(sharding.make_mesh())
  saved = ckpt_lib.saved_steps(workdir)   # checked before orbax starts its threads
  if not saved:
    raise FileNotFoundError(f'no checkpoint in {workdir}/checkpoints: train first')
  if step is not None and step not in saved:
    raise FileNotFoundError(f'no checkpoint for step {step} in {workdir}; saved steps are {saved}')
  ckpt = ckpt_lib.Checkpointer(workdir)
  try:
    state, step = ckpt.restore(ckpt_lib.abstract(jax.eval_shape(init, init_key), repl), step)
  finally:
    ckpt.close()
  return state, step
