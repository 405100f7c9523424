"""Train SPS: python -m sps.main --config=configs/sps.py:two_body [--workdir=DIR] [--config.x=v].

Running the same command again resumes from the newest checkpoint in the workdir.
"""
from common import cli
from sps.evaluate import PROJECT

if __name__ == '__main__':
  cli.train_main(PROJECT)
