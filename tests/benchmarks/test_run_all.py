"""benchmarks.run_all: the table's arithmetic by hand, and a tiny run end to end."""
import json

import pytest

pytest.importorskip('torch')

from benchmarks import run_all


def test_table_by_hand():
  rows = [{'project': 'vrnn', 'jax_s_per_step': 0.25, 'torch_s': 0.5, 'ratio': 2.0,
           'jax_mem': {'bytes': 3 * 2**20}, 'torch_mem': {'bytes': 3 * 2**30}}]
  lines = run_all.table(rows).splitlines()
  assert lines[2] == '| vrnn | 4.000 | 2.000 | **2.00** | 3 MiB | 3.00 GiB |'


def test_the_ratio_is_against_the_faster_torch_version():
  assert run_all.torch_seconds({'torch_hoisted_s_per_step': 0.3, 'torch_naive_s_per_step': 0.5,
                                'jax_s_per_step': 0.1}) == 0.3
  assert run_all.torch_seconds({'torch_s_per_step': 0.7, 'jax_s_per_step': 0.1}) == 0.7


def test_tiny_flags_match_make_config_keywords():
  assert run_all.tiny_argv('sps')[:2] == ['--batch=2', '--frames=6']
  assert '--enc_channels=4,8,16' in run_all.tiny_argv('sps')
  assert set(run_all.TINY) == set(run_all.PROJECTS)


def test_unknown_project_is_refused():
  with pytest.raises(SystemExit, match="unknown \\['nope'\\]"):
    run_all.main(['--projects=nope'])


def test_tiny_run_writes_the_table(tmp_path, capsys):
  rows = run_all.main(['--projects=vrnn', '--tiny', '--memory_steps=1', f'--out={tmp_path}'])
  (row,) = rows
  assert row['ratio'] == pytest.approx(row['torch_s'] / row['jax_s_per_step'])
  for side in ('jax', 'torch'):   # a process that builds a model holds at least its arrays
    assert row[f'{side}_mem']['bytes'] > 2**20
  md = (tmp_path / 'cpu.md').read_text()
  assert md.splitlines()[0] in capsys.readouterr().out
  assert '| vrnn |' in md and '--tiny' in md
  assert json.loads((tmp_path / 'cpu.json').read_text())['rows'][0]['ratio'] == row['ratio']


def test_memory_report_at_tiny_sizes(tmp_path):
  """benchmarks.memory in a fresh process (it sets XLA's dump flag before importing jax).

  With a persistent compilation cache in the environment (as the test session sets one), a
  cache hit would skip the compile it measures: it must switch the cache off, so nothing is
  written to it.
  """
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  cache = tmp_path / 'cache'
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  out = subprocess.run([sys.executable, '-m', 'benchmarks.memory', '--project=sps', '--tiny',
                        '--steps=1', '--top=3'], cwd=root, capture_output=True, text=True,
                       timeout=300, check=True, env=env).stdout
  assert not cache.exists() or not any(cache.iterdir())
  rows = [l for l in out.splitlines() if l.startswith('| after')]
  assert [r.split(' | ')[0] for r in rows] == [
      '| after the imports', '| after building the task and its state',
      '| after compiling the train step and releasing freed memory', '| after 1 steps']
  temps = out.split('largest temporaries:')[1].strip().splitlines()
  assert len(temps) == 3 and all('MiB' in t and 'f32[' in t for t in temps)
  plan = [l for l in out.splitlines() if l.startswith('XLA plan:')][0]
  assert 'temporaries' in plan
