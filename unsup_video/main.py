"""Train an LSTM video model: python -m unsup_video.main --config=configs/unsup_video.py[:variant]
[--workdir=DIR] [--config.x=v].

Running the same command again resumes from the newest checkpoint in the workdir.
"""
from common import cli
from unsup_video import evaluate, train

_CONFIG, _WORKDIR = cli.define_flags('configs/unsup_video.py:composite_conditional')


def main(argv):
  del argv
  cli.train_and_evaluate('unsup_video', _CONFIG, _WORKDIR.value, train.validate,
                         train.make_task, evaluate.evaluate)


if __name__ == '__main__':
  cli.run(main)
