"""The Colab notebooks in notebooks/ run end to end on CPU with the smoke configs.

Each notebook runs in a fresh Python process (no Jupyter or IPython needed): its code cells are
executed in order in one namespace, with an override cell right after the cell tagged
`parameters` that sets CONFIG='smoke', a tiny NUM_STEPS and a temporary WORKDIR. `!cmd` lines
become subprocess calls; IPython `%magics` are refused. This file is also that runner:
`python tests/test_notebooks.py NOTEBOOK OVERRIDES_JSON RESULT_JSON`.
"""
import ast
import importlib
import json
import math
import os
import re
import subprocess
import sys
import time
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, 'notebooks')
PROJECTS = ('sps', 'vrnn', 'unsup_video', 'vle', 'selfsup')
NUM_STEPS = 2
PARAMETERS = ('CONFIG', 'NUM_STEPS', 'OVERRIDES', 'WORKDIR', 'SAVE_TO_DRIVE')
# Names the notebook leaves behind, checked by the test after the run.
RESULTS = ('REPO_ROOT', 'status', 'EVAL_DIR', 'PICTURES', 'ARCHIVE')


def load(project):
  with open(os.path.join(NOTEBOOK_DIR, f'{project}.ipynb')) as f:
    return json.load(f)


def source(cell):
  return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']


def parameters_index(nb):
  found = [i for i, c in enumerate(nb['cells'])
           if c['cell_type'] == 'code' and 'parameters' in c['metadata'].get('tags', [])]
  assert len(found) == 1, f'expected one code cell tagged "parameters", found {len(found)}'
  return found[0]


def to_python(src):
  """Turns `!cmd` lines into subprocess calls, keeping their indentation; refuses %magics."""
  out = []
  for line in src.splitlines():
    m = re.match(r'(\s*)([!%])(.*)$', line)
    if m and m.group(2) == '%':
      raise ValueError(f'IPython magic not supported outside a notebook: {line.strip()}')
    if m:
      out.append(f'{m.group(1)}__import__("subprocess").run({m.group(3).strip()!r}, '
                 'shell=True, check=True)')
    else:
      out.append(line)
  return '\n'.join(out) + '\n'


def cells_to_run(nb, overrides):
  """(name, python source) of every code cell, with the override cell after the parameters."""
  at = parameters_index(nb)
  cells = []
  for i, c in enumerate(nb['cells']):
    if c['cell_type'] != 'code':
      continue
    cells.append((c.get('id', str(i)), to_python(source(c))))
    if i == at:
      cells.append(('overrides', ''.join(f'{k} = {v!r}\n' for k, v in overrides.items())))
  return cells


def run_notebook(path, overrides, result_path):
  """The runner: executes the notebook's cells in this process, then writes RESULTS as JSON."""
  with open(path) as f:
    nb = json.load(f)
  namespace = {'__name__': '__main__'}
  for name, src in cells_to_run(nb, overrides):
    print(f'--- cell {name}', flush=True)
    start = time.time()
    exec(compile(src, f'<{os.path.basename(path)} cell {name}>', 'exec'), namespace)
    print(f'--- cell {name}: {time.time() - start:.1f}s', flush=True)
  with open(result_path, 'w') as f:
    json.dump({k: namespace.get(k) for k in RESULTS}, f)


def numbers(tree):
  if isinstance(tree, dict):
    for v in tree.values():
      yield from numbers(v)
  elif isinstance(tree, list):
    for v in tree:
      yield from numbers(v)
  elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
    yield tree


def test_notebooks_are_valid_and_clean():
  names = sorted(n for n in os.listdir(NOTEBOOK_DIR) if n.endswith('.ipynb'))
  assert names == sorted(f'{p}.ipynb' for p in PROJECTS)
  for project in PROJECTS:
    nb = load(project)
    assert nb['nbformat'] == 4 and isinstance(nb['nbformat_minor'], int), project
    assert nb['metadata']['kernelspec']['name'] == 'python3', project
    ids = [c['id'] for c in nb['cells']]
    assert len(set(ids)) == len(ids), f'{project}: duplicate cell ids'
    assert all(re.fullmatch(r'[A-Za-z0-9_-]{1,64}', i) for i in ids), project
    assert nb['cells'][0]['cell_type'] == 'markdown', f'{project}: no markdown intro'
    for c in nb['cells']:
      assert c['cell_type'] in ('markdown', 'code'), project
      if c['cell_type'] == 'code':
        assert c['outputs'] == [] and c['execution_count'] is None, f'{project}: stored output'
    # The parameters cell assigns exactly the names the test overrides, and a real variant.
    params = nb['cells'][parameters_index(nb)]
    tree = ast.parse(source(params))
    assigned = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}
    assert assigned == set(PARAMETERS), f'{project}: parameters cell assigns {sorted(assigned)}'
    namespace = {}
    exec(source(params), namespace)
    variants = importlib.import_module(f'configs.{project}').VARIANTS
    assert namespace['CONFIG'] in variants and 'smoke' in variants, project
    # Every code cell is Python once `!` lines are translated.
    for name, src in cells_to_run(nb, {}):
      ast.parse(src, f'{project} cell {name}')
    code = ''.join(source(c) for c in nb['cells'] if c['cell_type'] == 'code')
    assert re.search(r"^REPO_URL = '", code, re.M), f'{project}: no REPO_URL'
  with pytest.raises(ValueError):
    to_python('%cd /tmp')
  assert to_python('  !echo hi').startswith('  __import__("subprocess").run(\'echo hi\'')


def _run(project, tmp_path):
  workdir = str(tmp_path / 'run')
  # eval_at_end=False skips the in-loop eval at the last step (the evaluate cell does the real one)
  # and checks that OVERRIDES reaches the config.
  overrides = {'CONFIG': 'smoke', 'NUM_STEPS': NUM_STEPS, 'OVERRIDES': {'eval_at_end': False},
               'WORKDIR': workdir, 'SAVE_TO_DRIVE': False}
  result_path = tmp_path / 'result.json'
  start = time.time()
  proc = subprocess.run(
      [sys.executable, os.path.abspath(__file__), os.path.join(NOTEBOOK_DIR, f'{project}.ipynb'),
       json.dumps(overrides), str(result_path)],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, f'{project} notebook failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}'
  print(f'{project}: {time.time() - start:.1f}s')
  result = json.loads(result_path.read_text())

  # The setup cell found this checkout: nothing was cloned or installed.
  assert os.path.realpath(result['REPO_ROOT']) == os.path.realpath(ROOT)
  assert 'git clone' not in proc.stdout and 'pip install' not in proc.stdout
  # Training ran the smoke config, with the overrides, to NUM_STEPS and saved a checkpoint there.
  assert result['status'] == 'done'
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  assert config['variant'] == 'smoke' and config['num_steps'] == NUM_STEPS
  assert config['eval_at_end'] is False
  ckpt = os.path.join(workdir, 'checkpoints', str(NUM_STEPS))
  assert os.path.isdir(ckpt) and os.listdir(ckpt), f'no checkpoint at step {NUM_STEPS}'
  # Evaluation wrote finite metrics and pictures, and the display cell found them.
  eval_dir = os.path.join(workdir, 'eval', f'step_{NUM_STEPS}')
  assert os.path.realpath(result['EVAL_DIR']) == os.path.realpath(eval_dir)
  with open(os.path.join(eval_dir, 'metrics.json')) as f:
    metrics = json.load(f)
  values = list(numbers(metrics))
  assert values and all(math.isfinite(v) for v in values), metrics
  pngs = sorted(n for n in os.listdir(eval_dir) if n.endswith('.png'))
  assert pngs and [os.path.basename(p) for p in result['PICTURES']] == pngs
  for name in pngs:
    assert name in proc.stdout   # the display cell named (outside IPython) each picture
  # The save cell zipped the workdir, checkpoint included.
  assert result['ARCHIVE'] == workdir + '.zip'
  with zipfile.ZipFile(result['ARCHIVE']) as z:
    members = z.namelist()
  assert 'metrics.jsonl' in members and any(m.startswith(f'checkpoints/{NUM_STEPS}/') for m in members)


@pytest.mark.parametrize('project', PROJECTS)
def test_notebook_runs(project, tmp_path):
  _run(project, tmp_path)


if __name__ == '__main__':
  run_notebook(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3])
