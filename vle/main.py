"""Train a VLE (and its baseline VAE): python -m vle.main --config=configs/vle.py[:variant]
[--workdir=DIR] [--config.x=v].

Running the same command again resumes from the newest checkpoint in the workdir.
"""
from common import cli
from vle import evaluate, train

_CONFIG, _WORKDIR = cli.define_flags('configs/vle.py:vanilla')


def main(argv):
  del argv
  cli.train_and_evaluate('vle', _CONFIG, _WORKDIR.value, train.validate, train.make_task,
                         evaluate.evaluate)


if __name__ == '__main__':
  cli.run(main)
