"""Train an LSTM video model: python -m unsup_video.main --config=configs/unsup_video.py[:variant]
[--workdir=DIR] [--config.x=v].

Running the same command again resumes from the newest checkpoint in the workdir.
"""
from common import cli
from unsup_video.evaluate import PROJECT

if __name__ == '__main__':
  cli.train_main(PROJECT)
