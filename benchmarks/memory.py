"""Where a JAX train step's memory goes on CPU: one project, in this (fresh) process.

Run from the repository root:

    python -m benchmarks.memory [--project sps] [--steps 2] [--top 10] [--tiny]

At the step benchmark's default sizes (the released recipe's, as `benchmarks.run_all`
uses), it prints the resident set of the process (and its peak so far) after the imports,
after building the task and its initial state (data, parameters, optimizer state, the
compiled init), after compiling the train step (what the XLA compiler holds; the persistent compilation
cache is off, so the step is always compiled), and after
`--steps` steps (with the compiler's freed memory released first, as common/loop.py does,
unless `--keep_freed`); then XLA's plan for the step (`compiled.memory_analysis()`: arguments,
outputs, and the one preallocated buffer that holds every temporary), and the `--top`
largest temporaries in that buffer, with the op that makes each, from XLA's buffer
assignment (`--xla_dump_to`, into a temporary folder). `run_all`'s "JAX peak memory" is
the last peak minus the first resident set.
"""
import argparse
import glob
import os
import re
import resource
import tempfile


def _mib(n):
  return f'{n / 2**20:,.0f} MiB'


def resident():
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def peak():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def largest_temporaries(dump_dir, top):
  """[(bytes, shape, the op that makes it)] of the largest values in the train step's preallocated temp buffer."""
  path = glob.glob(os.path.join(dump_dir, '*train_step*buffer-assignment.txt'))[0]
  with open(path) as f:
    text = f.read()
  start = text.find('preallocated-temp')
  if start < 0:
    return []
  block = text[start:text.find('\nallocation', start)]
  values = re.findall(r'value: <\d+ (\S+) @\d+> \(size=(\d+),offset=\d+\): (\S+)', block)
  hlo = path.replace('-buffer-assignment.txt', '.txt')
  ops = {}
  if os.path.exists(hlo):
    with open(hlo) as f:
      ops = dict(re.findall(r'%([\w.\-]+) = .*?op_name="([^"]+)"', f.read()))
  return sorted(((int(n), shape, ops.get(name, name)) for name, n, shape in values),
                reverse=True)[:top]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--project', default='sps',
                 choices=('sps', 'vrnn', 'unsup_video', 'vle', 'selfsup'))
  p.add_argument('--steps', type=int, default=2)
  p.add_argument('--tiny', action='store_true',
                 help="run_all's tiny sizes (checks the plumbing; the numbers mean nothing)")
  p.add_argument('--top', type=int, default=10)
  p.add_argument('--keep_freed', action='store_true',
                 help='do not release the memory the compiler freed (common/loop.py does)')
  args = p.parse_args(argv)
  dump = tempfile.mkdtemp(prefix='xla_dump_')
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + f' --xla_dump_to={dump}'
                             ' --xla_dump_hlo_module_re=.*train_step.*')
  import jax  # pylint: disable=g-import-not-at-top
  # A persistent-cache hit would skip the compile this measures (and write no dump).
  jax.config.update('jax_enable_compilation_cache', False)
  import torch  # pylint: disable=g-import-not-at-top,unused-import  (as run_all imports it)
  from benchmarks import run_all  # pylint: disable=g-import-not-at-top
  from common import loop  # pylint: disable=g-import-not-at-top
  base = resident()
  rows = [('after the imports', resident(), peak())]
  step_fn, state, batch_fn, key = run_all.jax_parts(
      args.project, run_all.TINY[args.project] if args.tiny else None)
  rows.append(('after building the task and its state', resident(), peak()))
  compiled = step_fn.lower(state, batch_fn(0), key).compile()
  if args.keep_freed:
    rows.append(('after compiling the train step', resident(), peak()))
  else:   # as common/loop.py trains
    loop.release_freed_memory()
    rows.append(('after compiling the train step and releasing freed memory', resident(), peak()))
  for i in range(args.steps):
    state, metrics = step_fn(state, batch_fn(i), key)
  jax.block_until_ready((state, metrics))
  rows.append((f'after {args.steps} steps', resident(), peak()))
  print(f'{args.project} train step, jax {jax.__version__} on {jax.default_backend()}')
  print('| when | resident | peak so far | peak above the imports |')
  print('|---|---:|---:|---:|')
  for when, now, top in rows:
    print(f'| {when} | {_mib(now)} | {_mib(top)} | {_mib(top - base)} |')
  m = compiled.memory_analysis()
  print(f'XLA plan: arguments {_mib(m.argument_size_in_bytes)}, outputs '
        f'{_mib(m.output_size_in_bytes)} ({_mib(m.alias_size_in_bytes)} aliased to the donated '
        f'state), temporaries {_mib(m.temp_size_in_bytes)}')
  print('largest temporaries:')
  for n, shape, op in largest_temporaries(dump, args.top):
    print(f'  {_mib(n):>9}  {shape}  {op}')


if __name__ == '__main__':
  main()
