"""Train a VRNN: python -m vrnn.main --config=configs/vrnn.py:handwriting [--workdir=DIR] [--config.x=v].

Running the same command again resumes from the newest checkpoint in the workdir.
"""
from common import cli
from vrnn import evaluate, train

_CONFIG, _WORKDIR = cli.define_flags('configs/vrnn.py:handwriting')


def make_task(config):
  # The workdir keeps the data's normalisation, so that resume and evaluation use the same.
  return train.make_task(config, _WORKDIR.value or cli.default_workdir('vrnn', config))


def main(argv):
  del argv
  cli.train_and_evaluate('vrnn', _CONFIG, _WORKDIR.value, train.validate, make_task,
                         evaluate.evaluate)


if __name__ == '__main__':
  cli.run(main)
