"""SPS from the command line: train, checkpoint, evaluate, resume after kill -9 / SIGTERM, fail fast."""
import functools
import json
import signal
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from common import checkpoint
from common import metrics
from configs import sps as sps_configs
from sps import train
from tests import helpers

train_cmd = functools.partial(helpers.train_cmd, 'sps')


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  return helpers.train_smoke('sps', tmp_path_factory.mktemp('sps_smoke'))


def test_smoke_trains_checkpoints_and_evaluates(smoke_run):
  workdir, proc = smoke_run
  assert json.load(open(workdir / 'config.json'))['variant'] == 'smoke'
  assert checkpoint.Checkpointer(str(workdir)).steps() == [15, 30]
  train_log = metrics.read(str(workdir), 'train')
  assert [r['step'] for r in train_log] == [10, 20, 30]
  assert train_log[-1]['loss'] < train_log[0]['loss']
  assert {'image_pred/symmetry', 'z_pred/symmetry', 'grad_norm', 'teacher_prob'} <= set(train_log[0])
  out = workdir / 'eval' / 'step_30'
  m = json.load(open(out / 'metrics.json'))
  assert m['step'] == 30 and 0.0 <= m['linear_projection_mse'] <= 1.5
  assert {'r2_axis0', 'r2_axis1', 'r2_axis2', 'self_recon', 'image_pred'} <= set(m)
  assert 0.0 <= m['knn_projection_mse'] <= 3.0 and len(m['per_seed']['knn_projection_mse']) == 1
  for png in ('decoder_traversal.png', 'rollout.png', 'z_trajectories.png', 'curves.png'):
    assert (out / png).stat().st_size > 5000, png
  assert '| linear_projection_mse |' in proc.stdout


def test_evaluate_cli_at_an_earlier_step(smoke_run):
  workdir, _ = smoke_run
  proc = helpers.run(helpers.cli('sps.evaluate', f'--workdir={workdir}', '--step=15'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.load(open(workdir / 'eval' / 'step_15' / 'metrics.json'))['step'] == 15
  proc = helpers.run(helpers.cli('sps.evaluate', f'--workdir={workdir}', '--step=7'))
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      f'error: no checkpoint for step 7 in {workdir}; saved steps are [15, 30]')


def _wait_for_checkpoint(proc, workdir, step, timeout=300):
  path = Path(workdir) / 'checkpoints' / str(step)
  t0 = time.time()
  while not path.exists():
    assert proc.poll() is None, f'training exited before checkpoint {step}: {proc.communicate()}'
    assert time.time() - t0 < timeout
    time.sleep(0.02)


def test_kill9_and_sigterm_resume_exactly(tmp_path):
  args = ('--config.num_steps=150', '--config.checkpoint.every=15', '--config.eval_every=30',
          '--config.log_every=5', '--config.checkpoint.max_to_keep=20', '--config.eval_at_end=False')
  ref, work = tmp_path / 'ref', tmp_path / 'work'
  assert helpers.run(train_cmd(ref, *args)).returncode == 0

  proc = helpers.start(train_cmd(work, *args))
  _wait_for_checkpoint(proc, work, 30)
  proc.kill()                                   # kill -9: no chance to clean up
  proc.wait()
  assert max(checkpoint.Checkpointer(str(work)).steps()) < 150

  proc = helpers.start(train_cmd(work, *args))
  _wait_for_checkpoint(proc, work, 60)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 143, err[-2000:]
  assert 'resuming' in out
  stopped = int(out.split('checkpoint saved at step ')[1].split(';')[0])
  assert 60 <= stopped < 150 and max(checkpoint.Checkpointer(str(work)).steps()) == stopped

  proc = helpers.run(train_cmd(work, *args))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'resuming {work} from step {stopped}' in proc.stdout
  # Every record equals the uninterrupted run's, except the train record that averages the
  # window the SIGTERM cut short (its steps before the stop were never logged).
  cut = (stopped // 5 + 1) * 5
  drop = lambda rs: [r for r in rs if not (r['split'] == 'train' and r['step'] == cut)]
  assert drop(helpers.records(work)) == drop(helpers.records(ref))
  assert [r['step'] for r in helpers.records(work)] == [r['step'] for r in helpers.records(ref)]
  restore = lambda w: checkpoint.Checkpointer(str(w)).restore(
      checkpoint.abstract(jax.eval_shape(train.make_init(sps_configs.get_config('smoke'))[2],
                                         jax.random.PRNGKey(0))), 150)[0]
  jax.tree.map(np.testing.assert_array_equal, restore(work), restore(ref))


@pytest.mark.parametrize('override,message', [
    ('--config.optim.lr=-1', 'error: config.optim.lr=-1.0 is invalid: must be > 0'),
    ('--config.symmetry.spec=T:0,3', "error: config.symmetry.spec='T:0,3' is invalid: symmetry "
     "group 'T:0,3': dims must lie in 0..2 (z has 3 dims)"),
    ('--config.batch_size=6', 'error: config.batch_size=6 is invalid: must be divisible by 4 '
     '(batch/k sequences get k transforms each (symmetry.k))'),
    ('--config.data.scene=three_body', "error: config.data.scene='three_body' is invalid: "
     "allowed values are 'bouncing_ball', 'two_body', 'music'"),
    ('--config.modle.z_dim=2', "error: --config.modle.z_dim: config has no field 'modle'"),
    ('--config.batch_size=abc', 'error: --config.batch_size=abc: must be an integer'),
    ('--config.optim.lr=fast', 'error: --config.optim.lr=fast: must be a number'),
    ('--config.model.vae=maybe', 'error: --config.model.vae=maybe: must be true or false'),
    ('--config.model.enc_channels=(8,x)',
     'error: --config.model.enc_channels=(8,x): must be a tuple of integers, e.g. (8,16,32)'),
])
def test_bad_config_fails_fast_in_one_line(tmp_path, override, message):
  override = override.replace('batch_size=6', 'batch_size=6 --config.symmetry.k=4').split()
  proc = helpers.run(train_cmd(tmp_path / 'w', *override), timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == message
  assert not (tmp_path / 'w').exists()


def test_workdir_that_is_a_file_fails_in_one_line(tmp_path):
  (tmp_path / 'f').write_text('')
  proc = helpers.run(train_cmd(tmp_path / 'f'), timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      f'error: --workdir={tmp_path / "f"}: {tmp_path / "f"} is a file, not a folder']
  assert proc.stdout == ''      # nothing was generated or compiled


def _truncate_newest_data_file(workdir, step):
  files = [p for p in (Path(workdir) / 'checkpoints' / str(step)).rglob('*')
           if p.is_file() and p.parent.name == 'd']
  biggest = max(files, key=lambda p: p.stat().st_size)
  with open(biggest, 'r+b') as f:
    f.truncate(100)


def test_unreadable_newest_checkpoint_is_set_aside_rewritten_and_evaluated(smoke_run, tmp_path):
  import shutil   # pylint: disable=g-import-not-at-top
  workdir = tmp_path / 'w'
  shutil.copytree(smoke_run[0], workdir)
  _truncate_newest_data_file(workdir, 30)
  proc = helpers.run(helpers.cli('sps.evaluate', f'--workdir={workdir}'))
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f'error: checkpoint step 30 in {workdir}/checkpoints is unreadable (')
  assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-3000:]

  proc = helpers.run(train_cmd(workdir))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stderr == ''      # no storage tracebacks, no log lines
  lines = proc.stdout.strip().splitlines()
  assert lines[0].startswith('warning: checkpoint step 30 is unreadable (') and len(lines) < 25
  assert lines[1] == f'resuming {workdir} from step 15'
  assert f'of {workdir} at step 30' in proc.stdout          # the rewritten step is evaluated
  assert [p.name for p in (workdir / 'checkpoints_unreadable').iterdir()] == ['30']
  assert checkpoint.Checkpointer(str(workdir)).steps() == [15, 30]
  again = helpers.run(train_cmd(workdir))
  assert again.returncode == 0 and 'is unreadable' not in again.stdout + again.stderr


def test_ctrl_c_saves_and_the_message_is_the_last_thing_drawn(tmp_path):
  import subprocess   # pylint: disable=g-import-not-at-top
  work = tmp_path / 'w'
  proc = subprocess.Popen(
      train_cmd(work, '--config.progress_bar=True', '--config.num_steps=100000',
                '--config.log_every=5', '--config.eval_every=1000', '--config.checkpoint.every=1000'),
      cwd=helpers.REPO, env=helpers.ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  log = work / 'metrics.jsonl'
  t0 = time.time()
  while not (log.exists() and log.read_text()):
    assert proc.poll() is None and time.time() - t0 < 300
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 130, out[-2000:]
  last = [l for l in out.replace('\r', '\n').splitlines() if l.strip()][-1]
  assert last.startswith('SIGINT received: checkpoint saved at step '), out[-2000:]
  stopped = int(last.split('at step ')[1].split(';')[0])
  assert checkpoint.Checkpointer(str(work)).steps() == [stopped]


def test_config_files_load_without_a_deprecation_warning(tmp_path):
  # config_flags' own loader calls importlib's deprecated load_module()
  proc = helpers.run([sys.executable, '-W', 'error::DeprecationWarning', '-m', 'sps.main',
                      '--config=configs/sps.py:smoke', '--config.num_steps=0',
                      f'--workdir={tmp_path / "w"}'], timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip() == 'error: config.num_steps=0 is invalid: must be > 0'


def test_train_step_compiles_once():
  config = sps_configs.get_config('smoke')
  task = train.make_task(config)
  state, m = helpers.steps_tracing_once(task)
  assert state.step.tolist() == [3] and np.isfinite(float(m['loss']))


def test_sharded_step_on_8_devices_matches_one_device():
  # atol 5e-5: Adam turns float32 reduction-order noise in a few of the 8192 decoder weights
  # into ~2e-5 differences after 3 steps (the seed axis changes XLA's reduction order).
  helpers.assert_sharded_step_matches_one_device('sps', atol=5e-5, batch_size=8)


@pytest.fixture(scope='module')
def seeds_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('sps_seeds')
  proc = helpers.run(train_cmd(workdir, '--config.num_seeds=3', '--config.num_steps=15',
                               '--config.collapse.check_step=0', '--config.collapse.max_ratio=1e-3'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def test_many_seeds_train_in_one_process_and_evaluate_per_seed(seeds_run):
  workdir, proc = seeds_run
  m = json.load(open(workdir / 'eval' / 'step_15' / 'metrics.json'))
  lp = m['per_seed']['linear_projection_mse']
  assert len(lp) == 3 and len(set(lp)) == 3                 # three different random inits
  assert m['linear_projection_mse'] == pytest.approx(float(np.median(lp)))
  assert m['success_rate'] == float(np.mean(np.array(lp) < 0.03))
  assert [m[f'linear_projection_mse/seed{i}'] for i in range(3)] == lp
  assert m['figure_seed'] == int(np.argmin(lp))
  assert (workdir / 'eval' / 'step_15' / 'seeds.png').stat().st_size > 5000
  # Every seed is far from reconstructing after 15 steps: all flagged (max_ratio 1e-3).
  assert m['collapsed_seeds'] == 3 and 'collapse detector: seed(s) [0, 1, 2]' in proc.stdout
  # The checkpoint holds every seed.
  state = checkpoint.Checkpointer(str(workdir)).restore(checkpoint.abstract(jax.eval_shape(
      train.make_init(helpers.set_fields(sps_configs.get_config('smoke'), {'num_seeds': 3}))[2],
      jax.random.PRNGKey(0))))[0]
  assert state.step.tolist() == [15, 15, 15]


def test_init_from_a_run_with_a_wider_z(seeds_run, tmp_path):
  source, _ = seeds_run
  work = tmp_path / 'wide'
  proc = helpers.run(train_cmd(work, f'--config.init_from={source}', '--config.num_seeds=3',
                               '--config.model.z_dim=6', "--config.symmetry.spec=T:0,1,2|3,4,5",
                               '--config.num_steps=1', '--config.eval_at_end=False'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  load = lambda w, n, z: checkpoint.Checkpointer(str(w)).restore(checkpoint.abstract(
      jax.eval_shape(train.make_init(helpers.set_fields(sps_configs.get_config('smoke'), {
          'num_seeds': n, 'model.z_dim': z}))[2], jax.random.PRNGKey(0))))[0]
  src, new = load(source, 3, 3), load(work, 3, 6)
  # After one Adam step (lr 1e-3) every weight moved by ~1e-3 at most: the old z dims' weights
  # are the source's, the new dims' are fresh.
  k_src = src.params['params']['decoder']['Dense_0']['kernel']           # (3 seeds, 3, 16)
  k_new = new.params['params']['decoder']['Dense_0']['kernel']           # (3 seeds, 6, 16)
  np.testing.assert_allclose(k_new[:, :3], k_src, atol=2e-3)
  assert np.abs(k_new[:, 3:] - k_src).max() > 0.05
  for extra, message in [('--config.num_seeds=3', 'a parameter of shape (32, 3) does not fit'),
                         ('--config.num_seeds=2', 'the source run has 3 seeds; use num_seeds=3')]:
    proc = helpers.run(train_cmd(tmp_path / 'bad', f'--config.init_from={source}', extra,
                                 '--config.model.prior_width=8'), timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr.strip().splitlines()[-1]


def test_sweep_cli_writes_a_table_and_box_plot_and_resumes(tmp_path):
  args = ['--config=configs/sps.py:smoke', f'--workdir={tmp_path}', '--config.num_seeds=2',
          '--config.num_steps=4', '--config.eval_every=4', '--config.checkpoint.every=4',
          '--config.log_every=2', '--config.progress_bar=False',
          '--sweep=symmetry.k=0,2']
  proc = helpers.run(helpers.cli('sps.sweep', *args))
  assert proc.returncode == 0, proc.stderr[-3000:]
  md = (tmp_path / 'results.md').read_text().splitlines()
  assert md[0].startswith('| group | seeds | success rate (< 0.03) | median linear_projection_mse')
  assert [l.split(' | ')[0] for l in md[2:]] == ['| symmetry.k=0', '| symmetry.k=2']
  assert all(l.split(' | ')[1] == '2' for l in md[2:])
  res = json.load(open(tmp_path / 'results.json'))
  for name, folder in [('symmetry.k=0', 'symmetry.k=0'), ('symmetry.k=2', 'symmetry.k=2')]:
    m = json.load(open(tmp_path / folder / 'eval' / 'step_4' / 'metrics.json'))
    assert res['groups'][name]['values'] == m['per_seed']['linear_projection_mse']
  assert (tmp_path / 'box.png').stat().st_size > 5000
  # The k=0 group has no symmetry path; k=2 does.
  assert 'image_pred/symmetry' not in metrics.read(str(tmp_path / 'symmetry.k=0'), 'train')[0]
  assert 'image_pred/symmetry' in metrics.read(str(tmp_path / 'symmetry.k=2'), 'train')[0]
  # Again: nothing is retrained, the same table comes out.
  again = helpers.run(helpers.cli('sps.sweep', *args))
  assert again.returncode == 0 and 'new run' not in again.stdout
  assert (tmp_path / 'results.md').read_text().splitlines() == md
  # A different sweep in the same folder is refused; a bad value fails in one line.
  other = helpers.run(helpers.cli('sps.sweep', *args[:-1], '--sweep=symmetry.k=1'))
  assert other.returncode == 2 and 'holds a different sweep' in other.stderr
  bad = helpers.run(helpers.cli('sps.sweep', *args[:-1], '--sweep=symmetry.k=3'))
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines()[-1].startswith(
      'error: group symmetry.k=3: config.batch_size=4 is invalid: must be divisible by 3')


def test_music_trains_and_evaluates_pitch(tmp_path):
  proc = helpers.run(helpers.cli(
      'sps.main', '--config=configs/sps.py:music', f'--workdir={tmp_path}',
      '--config.progress_bar=False', '--config.num_steps=4', '--config.eval_every=4',
      '--config.checkpoint.every=4', '--config.log_every=2', '--config.batch_size=4',
      '--config.data.num_train=8', '--config.data.num_eval=4', '--config.data.num_timbres=3',
      '--config.model.mlp_hidden=(32,16)', '--config.eval.batch_size=4', '--config.num_seeds=2'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = tmp_path / 'eval' / 'step_4'
  m = json.load(open(out / 'metrics.json'))
  for k in ('pitch_r2_heldout', 'pitch_r2_train_timbres'):
    assert len(m['per_seed'][k]) == 2 and all(-1e-9 <= v <= 1 for v in m['per_seed'][k])
  assert m['per_seed']['r2_axis0'] != m['per_seed']['pitch_r2_heldout']   # global vs per timbre
  assert (out / 'z_vs_pitch.png').stat().st_size > 5000 and (out / 'seeds.png').exists()
  assert 'image_pred/symmetry' in metrics.read(str(tmp_path), 'train')[0]
