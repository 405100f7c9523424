"""Compare groups of SPS runs: python -m sps.sweep --config=configs/sps.py:bouncing_ball
    --sweep='symmetry.k=0,1,4' [--sweep='data.num_train=64,256'] [--workdir=DIR]
    [--metric=linear_projection_mse] [--config.num_seeds=16] [--config.x=v ...]

Each group (one value per --sweep flag; several flags give their product) trains
config.num_seeds seeds in one process, in DIR/<field=value,...>, then is evaluated. The sweep
writes DIR/results.md (a markdown table: per group the seeds, success rate, median and
quartiles of the metric), DIR/results.json (every seed's metrics) and DIR/box.png. Values are
separated by commas, or by semicolons when a value holds commas
(--sweep='symmetry.spec=T:0,2 R:0,2;T:0,1 R:0,1'). Running the same command again resumes:
finished groups are kept, an interrupted one continues from its newest checkpoint.
"""
import ast
import itertools
import json
import os
import sys

import numpy as np
from absl import flags

from common import cli
from common import config as cfg
from common import loop
from common import metrics as metrics_lib
from sps import evaluate as sps_evaluate
from sps import figures as sps_figures
from sps import train

_CONFIG, _WORKDIR = cli.define_flags('configs/sps.py:bouncing_ball')
_SWEEP = flags.DEFINE_multi_string(
    'sweep', None, "field=v1,v2,... (or v1;v2 when values hold commas); repeat for a product.")
_METRIC = flags.DEFINE_string('metric', 'linear_projection_mse',
                              'Per-seed eval metric the table and box plot compare.')


def parse_value(config, field, text):
  """`text` as the type of config.<field> (bool, int, float, str or tuple)."""
  current = cfg.get(config, field)
  text = text.strip()
  try:
    if isinstance(current, bool):
      if text.lower() not in ('true', 'false', '1', '0'):
        raise ValueError
      return text.lower() in ('true', '1')
    if isinstance(current, (int, float)):
      value = ast.literal_eval(text)
      if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError
      return type(current)(value) if isinstance(current, float) or value == int(value) else value
    if isinstance(current, (tuple, list)):
      return tuple(ast.literal_eval(text))
  except (ValueError, SyntaxError):
    raise cfg.ConfigError(f'--sweep {field}: {text!r} is not a {type(current).__name__}') from None
  return text


def parse_sweeps(config, specs):
  """[(field, [values])] from the --sweep flags, checking fields and value types."""
  if not specs:
    raise cfg.ConfigError("give at least one --sweep='field=v1,v2,...'")
  out = []
  for spec in specs:
    field, sep, values = spec.partition('=')
    field = field.strip()
    if not sep or not values.strip():
      raise cfg.ConfigError(f"--sweep {spec!r}: write field=v1,v2,...")
    try:
      cfg.get(config, field)
    except (KeyError, AttributeError):
      raise cfg.ConfigError(f'--sweep {spec!r}: config has no field {field!r}') from None
    parts = values.split(';' if ';' in values else ',')
    out.append((field, [parse_value(config, field, v) for v in parts]))
  return out


def groups(config, sweeps):
  """[(name, config)] for the product of the sweeps' values; names like 'symmetry.k=4'."""
  out = []
  for values in itertools.product(*[vs for _, vs in sweeps]):
    c = config.copy_and_resolve_references()
    names = []
    for (field, _), v in zip(sweeps, values):
      parent, _, leaf = field.rpartition('.')
      (cfg.get(c, parent) if parent else c)[leaf] = v
      names.append(f'{field}={v if not isinstance(v, tuple) else ",".join(map(str, v))}')
    out.append((' '.join(names), c))
  return out


def folder_name(name):
  return ''.join(ch if ch.isalnum() or ch in '.=,-_' else '_' for ch in name)


def seed_values(metrics, metric):
  """The per-seed values of `metric` from an evaluation's metrics.json."""
  per_seed = metrics.get('per_seed', {})
  if metric in per_seed:
    return np.asarray(per_seed[metric], float)
  if metric in metrics:
    return np.asarray([metrics[metric]], float)
  raise cfg.ConfigError(f'--metric={metric!r} is not an eval metric; allowed values are '
                        f'{", ".join(sorted(per_seed))}')


def escape_steps(records, num_seeds, max_ratio):
  """Per seed, the first eval step at which its self-recon ratio fell below max_ratio (it left
  the mean-frame plateau), or None if it never did; records are metrics.jsonl's eval events."""
  key = lambda i: f'self_recon_ratio/seed{i}' if num_seeds > 1 else 'self_recon_ratio'
  records = sorted(records, key=lambda r: r['step'])
  return [next((r['step'] for r in records if r.get(key(i), np.inf) < max_ratio), None)
          for i in range(num_seeds)]


def escape_summary(steps):
  """'n/N, median step s, last s' (or '0/N') for escape_steps' list."""
  left = sorted(s for s in steps if s is not None)
  if not left:
    return f'0/{len(steps)}'
  return f'{len(left)}/{len(steps)}, median step {int(np.median(left))}, last {left[-1]}'


def higher_is_better(metric):
  """R² and rates improve upwards; losses and MSEs downwards."""
  return 'r2' in metric or 'rate' in metric


def table(results, metric, threshold):
  """The markdown comparison table."""
  lines = [f'| group | seeds | success rate (< {threshold}) | median {metric} | '
           '25% / 75% | best | collapsed (detector) | left the plateau |',
           '|---|---|---|---|---|---|---|---|']
  best = np.max if higher_is_better(metric) else np.min
  for name, r in results.items():
    v = np.asarray(r['values'])
    lp = np.asarray(r['per_seed']['linear_projection_mse'])
    q1, q3 = np.percentile(v, [25, 75])
    lines.append(f'| {name} | {len(v)} | {np.mean(lp < threshold):.0%} | {np.median(v):.4g} | '
                 f'{q1:.4g} / {q3:.4g} | {best(v):.4g} | {r["collapsed_seeds"]} | '
                 f'{escape_summary(r.get("escape_steps", []))} |')
  return '\n'.join(lines)


def run_sweep(config, workdir, sweeps, metric):
  """Trains and evaluates every group (resuming), then writes the table, JSON and box plot."""
  todo = groups(config, sweeps)
  for name, c in todo:
    try:
      train.validate(c)
    except cfg.ConfigError as e:
      raise cfg.ConfigError(f'group {name}: {e}') from None
  os.makedirs(workdir, exist_ok=True)
  spec_path = os.path.join(workdir, 'sweep.json')
  spec = {'sweeps': [[f, [list(v) if isinstance(v, tuple) else v for v in vs]] for f, vs in sweeps]}
  if os.path.exists(spec_path) and json.load(open(spec_path)) != spec:
    raise cfg.ConfigError(f'{workdir} holds a different sweep ({json.load(open(spec_path))}); '
                          'use a new --workdir')
  json.dump(spec, open(spec_path, 'w'))
  results = {}
  for i, (name, c) in enumerate(todo):
    gdir = os.path.join(workdir, folder_name(name))
    print(f'\n== group {i + 1}/{len(todo)}: {name} ({c.num_seeds} seeds) -> {gdir}', flush=True)
    _, status = loop.train(c, gdir, train.make_task(c))
    if status.startswith('interrupted'):
      return status
    final = os.path.join(gdir, 'eval', f'step_{c.num_steps}', 'metrics.json')
    if not os.path.exists(final):
      sps_evaluate.evaluate(gdir, c.num_steps)
    m = json.load(open(final))
    results[name] = {'values': seed_values(m, metric).tolist(), 'per_seed': m['per_seed'],
                     'collapsed_seeds': m['collapsed_seeds'], 'workdir': gdir,
                     'escape_steps': escape_steps(metrics_lib.read(gdir, 'eval'), c.num_seeds,
                                                  c.collapse.max_ratio)}
  threshold = config.eval.success_threshold
  md = table(results, metric, threshold)
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write(f'{md}\n')
  json.dump({'metric': metric, 'groups': results}, open(os.path.join(workdir, 'results.json'), 'w'),
            indent=1)
  lin = metric == 'linear_projection_mse'
  sps_figures.box_plot(os.path.join(workdir, 'box.png'),
                       {n: r['values'] for n, r in results.items()}, threshold if lin else None,
                       f'{metric} per seed, {config.num_steps} steps',
                       ylabel=f'{metric} (log)' if lin else metric)
  print(f'\n{md}\n\nwrote {workdir}/results.md, results.json, box.png')
  return 'done'


def main(argv):
  del argv
  cli.quiet_logs()
  cli.use_compilation_cache()
  config = _CONFIG.value
  workdir = _WORKDIR.value or os.path.join('runs', 'sps_sweeps', config.get('variant', 'sweep'))
  try:
    status = run_sweep(config, workdir, parse_sweeps(config, _SWEEP.value), _METRIC.value)
  except (cfg.ConfigError, FileNotFoundError) as e:
    cli.fail(str(e))
  except loop.NonFiniteError as e:
    cli.fail(str(e), code=1)
  if status.startswith('interrupted'):
    sys.exit(cli.EXIT_CODES[status.split(':')[1]])


if __name__ == '__main__':
  cli.run(main)
