"""Train a pretext task or a classifier: python -m selfsup.main --config=configs/selfsup.py[:variant]
[--workdir=DIR] [--config.x=v].

Running the same command again resumes from the newest checkpoint in the workdir. Fine-tune a
pretext run's encoder with --config=configs/selfsup.py:finetune --config.finetune.init_from=DIR.
"""
from common import cli
from selfsup.evaluate import PROJECT

if __name__ == '__main__':
  cli.train_main(PROJECT)
