"""What every project's `main.py` and `evaluate.py` do: parse the config, validate it, train,
evaluate (a project declares itself once as a `common.project.Project`)."""
import ast
import os
import sys

from absl import flags
from ml_collections import config_flags

from common import checkpoint
from common import config as cfg
from common import distributed
from common import loop

EXIT_CODES = {'SIGINT': 130, 'SIGTERM': 143}


def define_flags(default_config):
  config = config_flags.DEFINE_config_file(
      'config', default_config, 'Config file and variant, e.g. configs/sps.py:two_body.',
      lock_config=True)
  workdir = flags.DEFINE_string(
      'workdir', None, 'Run folder; default runs/<project>/<variant>. Rerun to resume.')
  return config, workdir


def parse_flags(argv):
  """absl's parser, with one-line errors for unknown config fields and bad values."""
  try:
    parsed = flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, ValueError, TypeError, OSError) as e:
    _check_overrides(argv)
    lines = [l.strip() for l in str(e).splitlines() if l.strip()] or [type(e).__name__]
    fail(' '.join(lines).replace('flag --', '--'))
  if any(a.startswith('--config.') for a in argv[1:]):
    _check_overrides(argv)   # config_flags lets a tuple field take any elements
  return parsed


def _check_overrides(argv):
  """Exits in one line at the first --config.a.b=v that names no field or has the wrong type."""
  spec = next((a.split('=', 1)[1] for a in argv[1:] if a.startswith('--config=')),
              flags.FLAGS['config'].default)
  config = _load_config(spec)
  for arg in argv[1:]:
    if not arg.startswith('--config.'):
      continue
    field, has_value, value = arg[len('--config.'):].partition('=')
    parent, _, leaf = field.rpartition('.')
    try:
      node = cfg.get(config, parent) if parent else config
    except (KeyError, AttributeError):
      fail(f'--config.{field}: config has no field {parent!r}')
    if leaf not in node:
      fail(f'--config.{field}: no such field; fields of config{"." + parent if parent else ""}'
           f' are {", ".join(sorted(node.keys()))}')
    # `--config.a.b v` and a bare boolean `--config.flag` are absl's to parse
    expected = has_value and _type_error(node[leaf], value)
    if expected:
      fail(f'--config.{field}={value}: must be {expected}')


def _type_error(default, text):
  """What `text` must be to replace `default` (e.g. 'an integer'), or None when it fits."""
  def literal():
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text
  if isinstance(default, bool):
    ok = text.lower() in ('true', 'false', '1', '0')
    return None if ok else 'true or false'
  if isinstance(default, int):
    return None if isinstance(literal(), int) and not isinstance(literal(), bool) else 'an integer'
  if isinstance(default, float):
    return None if isinstance(literal(), (int, float)) else 'a number'
  if isinstance(default, tuple) and default:
    kind = type(default[0])
    if all(isinstance(x, kind) for x in default) and kind in (int, float, str):
      value = literal()
      value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
      ok = all(isinstance(x, kind if kind is not float else (int, float)) for x in value)
      name = {int: 'integers', float: 'numbers', str: 'strings'}[kind]
      example = repr(tuple(default)).replace(' ', '')
      return None if ok else f'a tuple of {name}, e.g. {example}'
  return None


def _load_config(spec):
  """Loads 'path/to/file.py:variant' as config_flags does, or exits with its error in one line."""
  path, _, variant = spec.partition(':')
  if not os.path.exists(path):
    fail(f'--config={spec}: no such file {path!r} (run from the repository root)')
  module = _load_source('_config', path)
  try:
    return module.get_config(variant) if variant else module.get_config()
  except ValueError as e:
    fail(f'--config={spec}: {e}')


def _load_source(module_name, module_path):
  """A config file as a module, with exec_module: config_flags' own loader calls the
  deprecated `load_module()` (a DeprecationWarning on every run, gone in Python 3.12+)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  module_spec = importlib.util.spec_from_file_location(module_name, module_path)
  module = importlib.util.module_from_spec(module_spec)
  sys.modules[module_name] = module   # as load_module() did
  module_spec.loader.exec_module(module)
  return module


config_flags.config_flags._load_source = _load_source   # pylint: disable=protected-access


def run(main):
  from absl import app  # pylint: disable=g-import-not-at-top
  app.run(main, flags_parser=parse_flags)


def use_compilation_cache():
  """Reuses compiled train steps across runs (a resumed run starts in seconds, not minutes)."""
  import jax  # pylint: disable=g-import-not-at-top
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir',
                      os.path.join(os.path.expanduser('~'), '.cache', 'jax_compilation_cache'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


def quiet_logs():
  """Orbax logs every file it touches at INFO; keep the terminal for the progress bar."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)


def start_distributed():
  """Joins the other hosts when the environment asks (see common/distributed.py)."""
  try:
    return distributed.initialize()
  except ValueError as e:
    fail(str(e))


def fail(message, code=2):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def default_workdir(project, config):
  return os.path.join('runs', project, config.get('variant', 'default'))


def train_main(project):
  """`python -m <project>.main`: defines the flags and runs `train_and_evaluate`."""
  config, workdir = define_flags(project.default_config)
  run(lambda argv: train_and_evaluate(project, config, workdir.value))


def train_and_evaluate(project, config_flag, workdir):
  """Validates, trains (resuming), evaluates the final checkpoint; exits non-zero when stopped early."""
  quiet_logs()
  use_compilation_cache()
  multi_host = start_distributed()
  try:
    config = config_flag.value   # config_flags defers a file's load error to first use
    workdir = workdir or default_workdir(project.name, config)
  except OSError as e:
    fail(' '.join(l.strip() for l in str(e).splitlines() if l.strip()))
  try:
    loop.check_run(config, workdir)
    project.validate(config)
    task = project.make_task(config, workdir)
    _, status = loop.train(config, workdir, task)
    if status.startswith('interrupted'):
      _exit_now(EXIT_CODES[status.split(':')[1]], multi_host)
    if multi_host:   # evaluation writes files and is cheap: one process does it afterwards
      if distributed.is_chief():
        print(f'multi-host run: evaluate with `python -m {project.name}.evaluate '
              f'--workdir={workdir}` on one host')
    elif config.get('eval_at_end', True):
      project.evaluate(workdir)
  except (cfg.ConfigError, FileNotFoundError) as e:
    fail(str(e))
  except loop.NonFiniteError as e:
    fail(str(e), code=1)
  except KeyboardInterrupt:   # before the loop's handler is in place, or a second Ctrl+C
    print(f'\ninterrupted: nothing was saved after the last checkpoint in {workdir}',
          file=sys.stderr)
    _exit_now(EXIT_CODES['SIGINT'], multi_host)
  print(f'done: {workdir}')
  _exit_now(0, multi_host)


def _exit_now(code, multi_host):
  """Exits without the interpreter's teardown of jax and XLA, which takes ~5 s on a CPU:
  by now the checkpoints, metrics and pictures are written and closed. Hosts of a multi-host
  run exit normally, so that jax.distributed shuts down in step."""
  if multi_host:
    sys.exit(code)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)   # pylint: disable=protected-access


def run_evaluate(evaluate):
  """`python -m <project>.evaluate --workdir=DIR [--step=N]`."""
  workdir = flags.DEFINE_string('workdir', None, 'Training workdir to evaluate.')
  step = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the newest).')

  def main(argv):
    del argv
    quiet_logs()
    if not workdir.value:
      fail('--workdir is required: the folder of a training run')
    try:
      evaluate(workdir.value, step.value)
    except (cfg.ConfigError, FileNotFoundError) as e:
      fail(str(e))
    except checkpoint.UnreadableCheckpointError as e:
      fail(f'{e}; rerun training to write it again, or evaluate an older step with --step',
           code=1)

  run(main)
