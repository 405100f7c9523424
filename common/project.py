"""What a project hands to common/: one `Project`, declared once in `<project>/evaluate.py`.

`common/cli.py` trains a Project from the command line (`python -m <project>.main`) and
`Project.evaluate` restores and scores its checkpoints (`python -m <project>.evaluate`), so
that every project parses, validates, resumes, evaluates and reports the same way.
"""
import dataclasses
import functools
import os
from typing import Any, Callable, Optional

from common import config as cfg
from common import loop
from common import metrics as metrics_lib


@dataclasses.dataclass(frozen=True)
class Report:
  """What one evaluation of a restored state found, as `metrics_lib.report` writes it."""
  title: str                              # the printed headline
  metrics: dict                           # scalar metrics: the table and metrics.json
  figures: Callable[[str], dict]          # out folder -> {name: PNG path}, called once it exists
  saved_extra: dict = dataclasses.field(default_factory=dict)   # metrics.json only
  notes: tuple = ()                       # lines printed under the table


@dataclasses.dataclass(frozen=True)
class Project:
  """A research project as the shared command lines see it. Every function is pure apart
  from the files it is meant to read or write."""
  name: str                # the package, and runs/<name>/<variant> by default
  default_config: str      # --config when none is given, e.g. 'configs/sps.py:two_body'
  # (config, num_devices=None) -> None: every check that can fail, raising cfg.ConfigError.
  validate: Callable[..., None]
  # (config, workdir) -> loop.Task; the workdir is where a task may keep what resuming needs.
  make_task: Callable[[Any, str], loop.Task]
  # (saved config, workdir) -> (init_state, score): init_state(key) gives the abstract state to
  # restore into; score(state, step) -> Report. Data is best loaded in score, after the restore
  # has found the checkpoint.
  scorer: Callable[[Any, str], tuple]
  # The checks of a saved config before it is restored; None: validate on one device. A
  # project whose config names another run sets it to skip that run (it may be gone by now).
  validate_saved: Optional[Callable[[Any], None]] = None

  def evaluate(self, workdir, step=None):
    """Restores `workdir`'s checkpoint at `step` (default: newest) with the saved config, writes
    workdir/eval/step_<N>/metrics.json and the figures, prints the report; returns the metrics."""
    config = cfg.load(workdir)
    check = self.validate_saved or functools.partial(self.validate, num_devices=1)
    check(config)
    init_state, score = self.scorer(config, workdir)
    state, step = loop.restore(workdir, init_state, config.seed, step)
    report = score(state, step)
    out = os.path.join(workdir, 'eval', f'step_{step}')
    os.makedirs(out, exist_ok=True)
    metrics_lib.report(out, workdir, report.title, report.metrics, report.figures(out),
                       report.saved_extra, report.notes)
    return report.metrics
