"""Every project's train step against its PyTorch twin, in one command and one table.

Run from the repository root (with `pip install -e ".[torch]"`):

    python -m benchmarks.run_all [--projects sps,vrnn,unsup_video,vle,selfsup] [--quick]

For each project it runs `python -m benchmarks.<project>_step` in a fresh process (its own
defaults: the released recipe's sizes; `--quick` lowers rounds and steps), which alternates
the JAX step and the PyTorch twin in that process and reports the median seconds per step of
each. Then, once per side, a second fresh process builds only that side at the same sizes,
runs `--memory_steps` steps and reports its peak memory:

  * on CPU, the peak resident set of that process (`ru_maxrss`) above its size after the
    imports, i.e. parameters, optimizer state, activations and, for JAX, the compiler;
  * on GPU, the device's peak bytes in use (`memory_stats`) for JAX and
    `torch.cuda.max_memory_allocated` for PyTorch.

It prints a markdown table (steps/s of each, the ratio JAX / PyTorch, peak memory of each)
headed by the date, the platform and the command, and writes it with the raw numbers to
`--out` (default benchmarks/results/<platform>.md and .json). Nothing else should run on the
machine meanwhile: eager PyTorch suffers more from a busy core than one XLA program does.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

PROJECTS = ('sps', 'vrnn', 'unsup_video', 'vle', 'selfsup')
QUICK = ['--rounds', '2', '--steps', '2']
# `--tiny`: sizes at which every step compiles and runs in seconds (checks the plumbing; the
# numbers mean nothing). make_config keyword arguments; the command-line flags are the same.
TINY = {
    'sps': dict(batch=2, frames=6, prior_width=8, enc_channels=(4, 8, 16),
                dec_channels=(16, 8, 4)),
    'vrnn': dict(variant='smoke', batch=4, max_len=8),
    'unsup_video': dict(batch=4, hidden=16, canvas=32, num_frames=8, num_input=4),
    'vle': dict(variant='vanilla', batch=2, size=16, tokens=2),
    'selfsup': dict(batch=4, size=16, widths=(8, 16)),
}


def tiny_argv(project):
  """TINY[project] as the step benchmark's flags, with one round of one step."""
  flag = lambda v: ','.join(map(str, v)) if isinstance(v, tuple) else str(v)
  return [f'--{k}={flag(v)}' for k, v in TINY[project].items()] + ['--rounds=1', '--steps=1']


# ---------------------------------------------------------------------------
# One side of one project at the benchmark's default sizes, for the memory runs:
# build() -> run(n) that trains n steps and waits for them.

def _jax_runner(step_fn, state, batch_fn, key):
  import jax  # pylint: disable=g-import-not-at-top
  from common import loop  # pylint: disable=g-import-not-at-top
  loop.compile_step(step_fn, state, batch_fn(0), key)   # as common/loop.py trains
  i = 0

  def run(n):
    nonlocal state, i
    for _ in range(n):
      state, m = step_fn(state, batch_fn(i), key)
      i += 1
    jax.block_until_ready((state, m))
  return run


def _torch_runner(step):
  i = 0

  def run(n):
    nonlocal i
    for _ in range(n):
      step(i)
      i += 1
  return run


def _sides(project, device, sizes):
  """(jax_side, torch_side) builders of `project` at `sizes` (make_config's keywords):
  jax_side() -> (step_fn, state, batch_fn, loop_key), torch_side() -> step(i)."""
  import importlib  # pylint: disable=g-import-not-at-top
  mod = importlib.import_module(f'benchmarks.{project}_step')
  config = mod.make_config(**sizes)
  if project == 'sps':
    data = mod.synthetic_frames(config)
    return lambda: mod.build_jax(config, data), lambda: mod.build_torch(config, data)[0]
  if project == 'selfsup':
    images, labels = mod.synthetic_images(config)
    built = {}

    def jax_side():
      *out, built['batch'] = mod.build_jax(config, images, labels)
      return out

    def torch_side():
      jax_side()   # the twin trains on the batch the JAX task draws
      return mod.build_torch(config, built['batch'], device=device)[0]
    return jax_side, torch_side
  data = mod.synthetic_data(config)
  if project == 'unsup_video':
    data = data[0]
  return (lambda: mod.build_jax(config, data),
          lambda: mod.build_torch(config, data, device=device)[0])


def jax_parts(project, sizes=None):
  """(step_fn, state, batch_fn(step), loop_key) of the JAX side at `sizes` (default: the
  benchmark's own)."""
  return tuple(_sides(project, 'cpu', sizes or {})[0]())[:4]


def build(project, side, device, sizes):
  """run(n) for `side` ('jax' or 'torch') of `project` at `sizes` (make_config's keywords)."""
  jax_side, torch_side = _sides(project, device, sizes)
  if side == 'jax':
    return _jax_runner(*jax_side())
  return _torch_runner(torch_side())


def peak_bytes_now():
  """The process's peak resident set so far (Linux reports kilobytes)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss():
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def measure_memory(project, side, steps, sizes):
  """Builds one side, trains `steps` steps; returns {'bytes': peak, 'how': what was measured}."""
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  gpu = jax.devices()[0].platform == 'gpu'
  device = 'cuda' if (gpu and torch.cuda.is_available()) else 'cpu'
  base = current_rss()
  run = build(project, side, device, sizes)
  run(steps)
  if side == 'jax' and gpu:
    return {'bytes': jax.devices()[0].memory_stats()['peak_bytes_in_use'], 'how': 'device peak'}
  if side == 'torch' and device == 'cuda':
    return {'bytes': torch.cuda.max_memory_allocated(), 'how': 'cuda max allocated'}
  return {'bytes': peak_bytes_now() - base, 'how': 'peak RSS above imports'}


# ---------------------------------------------------------------------------
# The driver.

def _python(code, timeout):
  """Runs `code` in a fresh interpreter at the repository root; returns (stdout, wall seconds)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, 'PYTHONPATH': root + os.pathsep + os.environ.get('PYTHONPATH', '')}
  t = time.time()
  proc = subprocess.run([sys.executable, '-c', code], cwd=root, env=env, capture_output=True,
                        text=True, timeout=timeout)
  if proc.returncode != 0:
    raise RuntimeError(f'{code!r} failed:\n{proc.stderr[-3000:]}')
  return proc.stdout, time.time() - t


def _result(stdout):
  line = [l for l in stdout.splitlines() if l.startswith('RESULT ')][-1]
  return json.loads(line[len('RESULT '):])


def time_project(project, argv, timeout):
  code = (f'import json\nfrom benchmarks import {project}_step as m\n'
          f'r = m.main({argv!r})\nprint("RESULT " + json.dumps(r))')
  out, wall = _python(code, timeout)
  result = _result(out)
  result['wall_s'] = wall
  result['log'] = out
  return result


def memory_project(project, side, steps, sizes, timeout):
  code = (f'import json\nfrom benchmarks import run_all\nr = run_all.measure_memory('
          f'{project!r}, {side!r}, {steps}, {sizes!r})\nprint("RESULT " + json.dumps(r))')
  return _result(_python(code, timeout)[0])


def torch_seconds(result):
  """The faster PyTorch version's s/step (the one the ratio is taken against)."""
  if 'torch_s_per_step' in result:
    return result['torch_s_per_step']
  return min(v for k, v in result.items() if k.startswith('torch_') and k.endswith('_s_per_step'))


def fmt_bytes(n):
  return f'{n / 2**20:,.0f} MiB' if n < 2**30 else f'{n / 2**30:.2f} GiB'


def table(rows):
  lines = ['| project | JAX steps/s | PyTorch steps/s | ratio (JAX / PyTorch) | JAX peak memory | '
           'PyTorch peak memory |', '|---|---|---|---|---|---|']
  for r in rows:
    lines.append(f'| {r["project"]} | {1 / r["jax_s_per_step"]:.3f} | {1 / r["torch_s"]:.3f} | '
                 f'**{r["ratio"]:.2f}** | {fmt_bytes(r["jax_mem"]["bytes"])} | '
                 f'{fmt_bytes(r["torch_mem"]["bytes"])} |')
  return '\n'.join(lines)


def header(args):
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  d = jax.devices()[0]
  return (f'{datetime.date.today().isoformat()}, {d.platform} ({d.device_kind}, '
          f'{jax.device_count()} device), {os.cpu_count()} CPU cores, {platform.machine()}; '
          f'jax {jax.__version__}, torch {torch.__version__}; '
          f'`python -m benchmarks.run_all{" --quick" if args.quick else ""}'
          f'{" --tiny" if args.tiny else ""}`'), d.platform


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--projects', default=','.join(PROJECTS))
  p.add_argument('--quick', action='store_true', help='fewer rounds and steps (a first look)')
  p.add_argument('--tiny', action='store_true',
                 help='tiny models, one step: checks that everything runs; numbers mean nothing')
  p.add_argument('--memory_steps', type=int, default=2)
  p.add_argument('--timeout', type=int, default=3600, help='seconds per benchmark process')
  p.add_argument('--out', default='', help='folder for <platform>.md / .json (default '
                 'benchmarks/results)')
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  projects = [p for p in args.projects.split(',') if p]
  unknown = set(projects) - set(PROJECTS)
  if unknown:
    raise SystemExit(f'--projects: unknown {sorted(unknown)}; choose from {", ".join(PROJECTS)}')
  head, plat = header(args)
  print(head, flush=True)
  rows = []
  for project in projects:
    print(f'{project}: timing the steps ...', flush=True)
    argv = tiny_argv(project) if args.tiny else QUICK if args.quick else []
    r = time_project(project, argv, args.timeout)
    print('\n'.join('  ' + l for l in r.pop('log').splitlines()[-8:]), flush=True)
    rows.append({'project': project, 'jax_s_per_step': r['jax_s_per_step'],
                 'torch_s': torch_seconds(r), 'ratio': r['ratio'], 'timing': r})
    for side in ('jax', 'torch'):
      print(f'{project}: peak memory of {side} ...', flush=True)
      rows[-1][f'{side}_mem'] = memory_project(project, side, args.memory_steps,
                                               TINY[project] if args.tiny else {}, args.timeout)
  text = f'{head}\n\n{table(rows)}\n'
  print('\n' + text)
  out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, f'{plat}.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(out, f'{plat}.json'), 'w') as f:
    json.dump({'header': head, 'rows': rows}, f, indent=1)
  return rows


if __name__ == '__main__':
  main()
