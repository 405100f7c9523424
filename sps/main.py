"""Train SPS: python -m sps.main --config=configs/sps.py:two_body [--workdir=DIR] [--config.x=v].

Running the same command again resumes from the newest checkpoint in the workdir.
"""
from common import cli
from sps import evaluate, train

_CONFIG, _WORKDIR = cli.define_flags('configs/sps.py:two_body')


def main(argv):
  del argv
  cli.train_and_evaluate('sps', _CONFIG, _WORKDIR.value, train.validate, train.make_task,
                         evaluate.evaluate)


if __name__ == '__main__':
  cli.run(main)
