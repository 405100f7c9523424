"""Multi-host start: two processes of 4 CPU devices each train as one process of 8 does."""
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from common import distributed
from common import loop
from configs import vrnn as vrnn_configs
from tests import helpers
from vrnn import train as vrnn_train

STEPS = 4


@pytest.mark.parametrize('env,expected', [
    ({}, None),
    ({'SLURM_NTASKS': '1'}, None),
    ({'SLURM_NTASKS': '4'}, {}),
    ({'OMPI_COMM_WORLD_SIZE': '2'}, {}),
    ({'JAX_DISTRIBUTED': 'auto'}, {}),
    ({'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234', 'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': '1'},
     {'coordinator_address': '10.0.0.1:1234', 'num_processes': 2, 'process_id': 1}),
])
def test_request_reads_the_environment(env, expected):
  assert distributed.request(env) == expected


def test_request_names_what_is_missing():
  with pytest.raises(ValueError, match='missing JAX_NUM_PROCESSES, JAX_PROCESS_ID'):
    distributed.request({'JAX_COORDINATOR_ADDRESS': 'h:1'})


def test_importing_a_project_leaves_jax_uninitialised():
  """jax.distributed.initialize must come before any backend use: no import may compute."""
  projects = ('sps', 'vrnn', 'vle', 'selfsup', 'unsup_video')
  code = ('import common.cli\n' + ''.join(f'import {p}.train, {p}.evaluate\n' for p in projects) +
          'from jax._src import xla_bridge\n'
          'print("BACKENDS", sorted(xla_bridge._backends))')
  proc = helpers.run([sys.executable, '-c', code], timeout=120)
  assert 'BACKENDS []' in proc.stdout, proc.stdout + proc.stderr[-2000:]


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _cmd(workdir, *extra):
  return helpers.train_cmd('vrnn', str(workdir), f'--config.num_steps={STEPS}',
                           '--config.log_every=2', '--config.eval_every=2',
                           '--config.checkpoint.every=2', *extra)


def _final_params(workdir):
  config = vrnn_configs.get_config('smoke')
  state, step = loop.restore(str(workdir), vrnn_train.make_init(config)[2], config.seed)
  assert step == STEPS
  return jax.device_get(state.params)


def test_two_processes_train_as_one(tmp_path):
  one = tmp_path / 'one'
  # no end-of-run pictures: the two-process run skips them too
  proc = helpers.run_env(_cmd(one, '--config.eval_at_end=False'), {'XLA_FLAGS': '--xla_force_host_platform_device_count=8'})
  assert proc.returncode == 0, proc.stderr[-3000:]

  two = tmp_path / 'two'
  port = _free_port()
  procs = [subprocess.Popen(
      _cmd(two), cwd=helpers.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env={**helpers.ENV, 'XLA_FLAGS': '--xla_force_host_platform_device_count=4',
           'JAX_COORDINATOR_ADDRESS': f'localhost:{port}', 'JAX_NUM_PROCESSES': '2',
           'JAX_PROCESS_ID': str(i)}) for i in range(2)]
  outs = [p.communicate(timeout=400) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  # process 0 writes the run's files and says how to evaluate; process 1 stays quiet
  assert 'multi-host run: evaluate with' in outs[0][0]
  assert 'multi-host run' not in outs[1][0]
  assert not (two / 'eval').exists()
  # one copy of every record, with the same values as on one process
  got, want = helpers.records(two), helpers.records(one)
  assert [(r['step'], r['split']) for r in got] == [(r['step'], r['split']) for r in want]
  for g, w in zip(got, want):
    numbers = sorted(k for k, v in w.items() if isinstance(v, float))
    assert numbers and sorted(g) == sorted(w)
    np.testing.assert_allclose([g[k] for k in numbers], [w[k] for k in numbers],
                               rtol=1e-4, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               _final_params(two), _final_params(one))
