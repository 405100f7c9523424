"""Train a VLE (and its baseline VAE): python -m vle.main --config=configs/vle.py[:variant]
[--workdir=DIR] [--config.x=v].

Running the same command again resumes from the newest checkpoint in the workdir.
"""
from common import cli
from vle.evaluate import PROJECT

if __name__ == '__main__':
  cli.train_main(PROJECT)
