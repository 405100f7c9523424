"""Metric sinks: metrics.jsonl (one JSON object per event, with step and split) and TensorBoard."""
import json
import math
import os

import numpy as np


def _py(v):
  v = np.asarray(v)
  return v.item() if v.ndim == 0 else v.tolist()


class MetricWriter:
  """Appends to `workdir/metrics.jsonl` and writes TensorBoard scalars under the same workdir."""

  def __init__(self, workdir, resume_step=0):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    _truncate_after(self.path, resume_step)
    from tensorboardX import SummaryWriter  # imported here: it is slow to import
    self.tb = SummaryWriter(os.path.join(workdir, 'tensorboard'), purge_step=resume_step + 1,
                            flush_secs=30)

  def write(self, step, split, metrics):
    record = {'step': int(step), 'split': split, **{k: _py(v) for k, v in metrics.items()}}
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    for k, v in record.items():
      if k not in ('step', 'split') and isinstance(v, (int, float)) and math.isfinite(v):
        self.tb.add_scalar(f'{split}/{k}', v, int(step))

  def close(self):
    self.tb.close()


class NullWriter:
  """What processes other than 0 of a multi-host run write: nothing."""

  def write(self, step, split, metrics):
    pass

  def close(self):
    pass


def read(workdir, split=None):
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [r for r in records if split is None or r['split'] == split]


def _truncate_after(path, step):
  """Drops records past the checkpoint we resume from: they are recomputed, identically."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  keep = [l for l in lines if l.strip() and _step_of(l) <= step]
  if len(keep) != len(lines):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      f.writelines(keep)
    os.replace(tmp, path)


def _step_of(line):
  try:
    return json.loads(line)['step']
  except (ValueError, KeyError):
    return math.inf  # a line cut by a kill mid-write


def report(out_dir, workdir, title, metrics, figures, saved_extra=None, notes=()):
  """Writes out_dir/metrics.json ({**saved_extra, **metrics}) and prints the evaluation:
  the title, a markdown table of the metrics, `notes` (lines on reading its values) and the
  figures' paths relative to the workdir."""
  with open(os.path.join(out_dir, 'metrics.json'), 'w') as f:
    json.dump({**(saved_extra or {}), **metrics}, f, indent=2, sort_keys=True)
  print(f'\n{title}')
  print('| metric | value |\n|---|---|')
  for k, v in metrics.items():
    print(f'| {k} | {v:.6g} |')
  for line in notes:
    print(line)
  print(f'figures: {", ".join(os.path.relpath(p, workdir) for p in figures.values())}')
