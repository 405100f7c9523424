"""What every project's `main.py` does: parse the config, validate it, train, evaluate."""
import os
import sys

from absl import flags
from ml_collections import config_flags

from common import config as cfg
from common import loop

EXIT_CODES = {'SIGINT': 130, 'SIGTERM': 143}


def define_flags(default_config):
  config = config_flags.DEFINE_config_file(
      'config', default_config, 'Config file and variant, e.g. configs/sps.py:two_body.',
      lock_config=True)
  workdir = flags.DEFINE_string(
      'workdir', None, 'Run folder; default runs/<project>/<variant>. Rerun to resume.')
  return config, workdir


def quiet_logs():
  """Orbax logs every file it touches at INFO; keep the terminal for the progress bar."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)


def fail(message, code=2):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def train_and_evaluate(project, config, workdir, validate, make_task, evaluate):
  """Validates, trains (resuming), evaluates the final checkpoint; exits non-zero when stopped early."""
  quiet_logs()
  workdir = workdir or os.path.join('runs', project, config.get('variant', 'default'))
  try:
    validate(config)
    task = make_task(config)
    _, status = loop.train(config, workdir, task)
  except (cfg.ConfigError, FileNotFoundError) as e:
    fail(str(e))
  except loop.NonFiniteError as e:
    fail(str(e), code=1)
  if status.startswith('interrupted'):
    sys.exit(EXIT_CODES[status.split(':')[1]])
  if config.get('eval_at_end', True):
    evaluate(workdir)
  print(f'done: {workdir}')


def run_evaluate(evaluate):
  """`python -m <project>.evaluate --workdir=DIR [--step=N]`."""
  from absl import app  # pylint: disable=g-import-not-at-top
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

  app.run(main)
