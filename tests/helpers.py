"""What the test files share: running a project's command line in a subprocess, its sharded
step on 8 fake devices, and the last line of a step benchmark.

Import it as `from tests import helpers` (pytest puts the repository root on the path).
"""
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import chex
import jax
import numpy as np

from common import checkpoint
from common import config as cfg
from common import loop
from common import metrics

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'PYTHONPATH': str(REPO)}


def cli(module, *args):
  return [sys.executable, '-m', module, *args]


def train_cmd(project, workdir, *overrides):
  """`python -m <project>.main` on the project's smoke config."""
  return cli(f'{project}.main', f'--config=configs/{project}.py:smoke', f'--workdir={workdir}',
             '--config.progress_bar=False', *overrides)


def run(cmd, timeout=400):
  return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def run_env(cmd, env, timeout=400):
  """`run` with extra environment variables, e.g. XLA_FLAGS for fake devices."""
  return subprocess.run(cmd, cwd=REPO, env={**ENV, **env}, capture_output=True, text=True,
                        timeout=timeout)


def train_smoke(project, workdir):
  """Trains the smoke config from the command line. Returns (workdir, the finished process)."""
  proc = run(train_cmd(project, workdir))
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def start(cmd):
  """`cmd` running in the background, for tests that signal it."""
  return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def records(workdir):
  """The run's metric records without their timings, which differ between runs."""
  return [{k: v for k, v in r.items() if k != 'steps_per_sec'} for r in metrics.read(workdir)]


def write_records(workdir, records):
  """workdir/metrics.jsonl holding `records` ({'step', 'split', ...} each), as MetricWriter
  writes it; returns its (train, eval) records as the figures read them."""
  Path(workdir).mkdir(parents=True, exist_ok=True)
  (Path(workdir) / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
  return metrics.read(str(workdir), 'train'), metrics.read(str(workdir), 'eval')


def words(ax):
  """What a matplotlib axes says in words: its title and its texts."""
  return ' | '.join([ax.get_title()] + [t.get_text() for t in ax.texts])


def set_fields(config, overrides):
  """Sets dotted config fields in place, e.g. {'model.kind': 'conv'}; returns the config."""
  for field, value in overrides.items():
    parent, _, leaf = field.rpartition('.')
    (cfg.get(config, parent) if parent else config)[leaf] = value
  return config


def train_in_process(train_module, config, workdir):
  """Validates and trains `config` with a project's train module; it must finish."""
  train_module.validate(config)
  _, status = loop.train(config, str(workdir), train_module.make_task(config))
  assert status == 'done'


def assert_resume_matches_uninterrupted(train_module, config, tmp_path):
  """Trains `config` to its num_steps in one go, and in two runs stopped half-way: the metric
  records and the final parameters and optimizer state are identical."""
  steps = config.num_steps
  train_in_process(train_module, config, tmp_path / 'ref')
  config.num_steps = steps // 2
  train_in_process(train_module, config, tmp_path / 'work')
  config.num_steps = steps
  train_in_process(train_module, config, tmp_path / 'work')
  assert records(tmp_path / 'work') == records(tmp_path / 'ref')
  init = train_module.make_init(config)[2]
  restore = lambda w: checkpoint.Checkpointer(str(w)).restore(
      checkpoint.abstract(jax.eval_shape(init, jax.random.PRNGKey(0))), steps)[0]
  jax.tree.map(np.testing.assert_array_equal, restore(tmp_path / 'work'),
               restore(tmp_path / 'ref'))


def steps_tracing_once(task, steps=3):
  """Runs `steps` train steps of a loop.Task jitted as the loop does (state donated), failing if
  the step is traced more than once. Returns (state, metrics of the last step)."""
  step = jax.jit(chex.assert_max_traces(task.train_step, n=1), donate_argnums=0)
  state, key = task.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1)
  for i in range(steps):
    state, m = step(state, task.train_batch(i), key)
  return state, m


def assert_cli_fails_in_one_line(project, workdir, override, message):
  """The smoke training command with a bad override exits 2 with a one-line error starting
  with `message`, and creates nothing."""
  proc = run(train_cmd(project, workdir, override), timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith(message)
  assert not os.path.exists(workdir)


def assert_sharded_step_matches_one_device(project, atol=1e-5, outliers=0, outlier_atol=0.0,
                                           **overrides):
  """Trains `project`'s smoke config (with `overrides`) for 3 steps on 8 fake CPU devices and
  on 1, in a subprocess since the device count is fixed when jax starts: the parameters agree
  (rtol 1e-4, `atol`), except at most `outliers` elements, which agree within `outlier_atol`."""
  script = textwrap.dedent(f'''
      import jax, numpy as np
      from common import loop, sharding
      from configs import {project} as C
      from {project} import train
      assert jax.device_count() == 8
      c = C.get_config('smoke')
      c.update({overrides!r})
      c.num_steps, c.progress_bar, c.eval_at_end, c.eval_every = 3, False, False, 100
      out = []
      for n in (8, 1):
        state, _ = loop.train(c, WORK + str(n), train.make_task(c),
                              mesh=sharding.make_mesh(jax.devices()[:n]))
        out.append(jax.device_get(state.params))
      a, b = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(o)]) for o in out)
      far = np.abs(a - b) > {atol!r} + 1e-4 * np.abs(b)
      assert far.sum() <= {outliers!r}, (far.sum(), np.flatnonzero(far)[:10], a[far][:10], b[far][:10])
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=max({atol!r}, {outlier_atol!r}))
      print('SHARDED_OK', far.sum(), 'of', a.size, 'beyond atol')
  ''')
  env = {**ENV, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
  work = str(Path(os.environ.get('TMPDIR', '/tmp')) / f'{project}_shard_{os.getpid()}_')
  proc = subprocess.run([sys.executable, '-c', f'WORK = {work!r}\n' + script], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=400)
  assert 'SHARDED_OK' in proc.stdout, proc.stderr[-3000:]


def assert_ends_with_ratio(text):
  """A step benchmark's output ends with the line ratio=<positive number, 3 decimals>."""
  last = text.strip().splitlines()[-1]
  m = re.fullmatch(r'ratio=(\d+\.\d{3})', last)
  assert m, text
  ratio = float(m.group(1))
  assert math.isfinite(ratio) and ratio > 0, last
