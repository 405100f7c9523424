"""Config helpers: fail fast, in one line, naming the field and what is allowed."""
import json
import os

import ml_collections


class ConfigError(ValueError):
  """A bad config value, reported before anything is compiled or written."""


def get(config, field):
  """Reads a dotted field, e.g. get(config, 'optim.lr')."""
  value = config
  for part in field.split('.'):
    value = value[part]
  return value


def check(ok, field, value, allowed):
  if not ok:
    raise ConfigError(f'config.{field}={value!r} is invalid: {allowed}')


def check_choice(config, field, choices):
  value = get(config, field)
  check(value in choices, field, value, f'allowed values are {", ".join(map(repr, choices))}')


def check_positive(config, field, allow_zero=False):
  value = get(config, field)
  ok = isinstance(value, (int, float)) and (value >= 0 if allow_zero else value > 0)
  check(ok, field, value, 'must be >= 0' if allow_zero else 'must be > 0')


def check_range(config, field, lo, hi):
  value = get(config, field)
  check(isinstance(value, (int, float)) and lo <= value <= hi, field, value,
        f'must be in [{lo}, {hi}]')


def check_divisible(config, field, divisor, why):
  value = get(config, field)
  check(value % divisor == 0, field, value, f'must be divisible by {divisor} ({why})')


def to_dict(config):
  return json.loads(config.to_json_best_effort())


def save(config, workdir):
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def load(workdir):
  """The config a run was trained with, from its workdir."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise ConfigError(f'no config.json in {workdir}: is it a training workdir?')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def differences(old, new, ignore=()):
  """Dotted names of the leaf fields whose values differ between two config dicts."""
  def flatten(d, prefix=''):
    out = {}
    for k, v in d.items():
      if isinstance(v, dict):
        out.update(flatten(v, f'{prefix}{k}.'))
      else:
        out[f'{prefix}{k}'] = v
    return out
  a, b = flatten(old), flatten(new)
  return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in ignore)
