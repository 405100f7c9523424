"""Train a VRNN: python -m vrnn.main --config=configs/vrnn.py:handwriting [--workdir=DIR] [--config.x=v].

Running the same command again resumes from the newest checkpoint in the workdir.
"""
from common import cli
from vrnn.evaluate import PROJECT

if __name__ == '__main__':
  cli.train_main(PROJECT)
