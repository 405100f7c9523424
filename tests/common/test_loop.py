"""The shared loop on a toy regression task: resume, NaN guard, corrupt checkpoints, config checks."""
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from common import checkpoint
from common import config as cfg
from common import loop
from common import metrics
from common import train_state

W_TRUE = np.array([1.5, -2.0, 0.5], np.float32)


def toy_config(**overrides):
  c = ml_collections.ConfigDict(dict(
      seed=0, num_steps=20, batch_size=8, log_every=5, eval_every=10, progress_bar=False,
      eval_at_end=True, lr=0.2, nan_at=-1, profile='',
      checkpoint=dict(every=5, max_to_keep=10),
      early_stopping=dict(metric='', mode='min', patience=1, min_delta=0.0)))
  for k, v in overrides.items():
    c[k] = v
  return c


def toy_task(config):
  tx = optax.adam(config.lr)
  xs = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)

  def init(key):
    return train_state.create({'w': jax.random.normal(key, (3,))}, tx)

  def loss_fn(params, batch):
    return jnp.mean((batch['x'] @ params['w'] - batch['y']) ** 2)

  def train_step(state, batch, key):
    key = jax.random.fold_in(key, state.step)
    noise = 0.01 * jax.random.normal(key, batch['y'].shape)   # uses the key: resume must reproduce it
    loss, grads = jax.value_and_grad(loss_fn)(state.params, {**batch, 'y': batch['y'] + noise})
    grads = jax.tree.map(lambda g: jnp.where(state.step == config.nan_at, jnp.nan, g), grads)
    loss = jnp.where(state.step == config.nan_at, jnp.nan, loss)
    state, norms = train_state.apply_gradients(state, grads, tx)
    return state, {'loss': loss, **norms}

  def train_batch(step):
    idx = np.random.default_rng([config.seed, step]).integers(0, len(xs), config.batch_size)
    return {'x': xs[idx], 'y': xs[idx] @ W_TRUE}

  def evaluate(state):
    return {'eval_loss': float(loss_fn(state.params, {'x': xs, 'y': xs @ W_TRUE}))}

  return loop.Task(init=init, train_step=train_step, train_batch=train_batch, evaluate=evaluate)


def run(config, workdir):
  return loop.train(config, workdir, toy_task(config))


def records(workdir):
  return [{k: v for k, v in r.items() if k != 'steps_per_sec'} for r in metrics.read(workdir)]


def test_trains_and_writes_the_workdir(tmp_path):
  state, status = run(toy_config(), str(tmp_path))
  assert status == 'done' and int(state.step) == 20
  np.testing.assert_allclose(state.params['w'], W_TRUE, atol=0.3)
  rs = metrics.read(str(tmp_path))
  assert [r['step'] for r in rs if r['split'] == 'train'] == [5, 10, 15, 20]
  assert [r['step'] for r in rs if r['split'] == 'eval'] == [10, 20]
  assert {'loss', 'grad_norm', 'param_norm', 'update_norm', 'steps_per_sec'} <= set(rs[0])
  assert json.load(open(tmp_path / 'config.json'))['num_steps'] == 20
  assert checkpoint.Checkpointer(str(tmp_path)).steps() == [5, 10, 15, 20]
  assert any(f.startswith('events') for f in os.listdir(tmp_path / 'tensorboard'))


def test_resume_is_exact(tmp_path):
  full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
  s_full, _ = run(toy_config(), full)
  run(toy_config(num_steps=10), part)        # stop half way, as a crash after step 10 would
  with open(os.path.join(part, 'metrics.jsonl'), 'a') as f:   # a record the crash left behind
    f.write(json.dumps({'step': 12, 'split': 'train', 'loss': 123.0}) + '\n')
  s_part, _ = run(toy_config(), part)
  np.testing.assert_array_equal(s_full.params['w'], s_part.params['w'])
  assert records(full) == records(part)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  with pytest.raises(loop.NonFiniteError, match=r'non-finite .*loss.* at step 8.*step 5'):
    run(toy_config(nan_at=7), str(tmp_path))     # state.step 7 is the 8th update
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.steps() == [5]
  state, _ = ckpt.restore(checkpoint.abstract(jax.eval_shape(toy_task(toy_config()).init,
                                                             jax.random.PRNGKey(0))))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state))


def test_corrupt_latest_checkpoint_is_set_aside_and_written_again(tmp_path, capsys):
  run(toy_config(num_steps=10), str(tmp_path))
  capsys.readouterr()
  latest = tmp_path / 'checkpoints' / '10'
  for root, _, files in os.walk(latest):
    for f in files:
      if not f.startswith('_CHECKPOINT_METADATA'):
        with open(os.path.join(root, f), 'wb') as fh:
          fh.write(b'garbage')
  state, _ = run(toy_config(num_steps=12), str(tmp_path))
  out = capsys.readouterr().out.strip().splitlines()
  assert len(out) == 2, out
  assert 'step 10 is unreadable' in out[0] and 'checkpoints_unreadable' in out[0]
  assert out[1] == f'resuming {tmp_path} from step 5'
  assert int(state.step) == 12
  assert os.listdir(tmp_path / 'checkpoints_unreadable') == ['10']
  assert checkpoint.Checkpointer(str(tmp_path)).steps() == [5, 10, 12]   # 10 written again
  run(toy_config(num_steps=12), str(tmp_path))
  assert capsys.readouterr().out.strip() == f'resuming {tmp_path} from step 12'


def test_profile_writes_a_trace_of_the_steps_asked_for(tmp_path, capsys):
  run(toy_config(num_steps=6, profile='2:4'), str(tmp_path))
  traces = [f for _, _, fs in os.walk(tmp_path / 'profile') for f in fs if f.endswith('.xplane.pb')]
  assert len(traces) == 1
  assert 'profile of steps 2..3 written to' in capsys.readouterr().out


@pytest.mark.parametrize('spec', ['5', '4:2', 'a:b', '1:2:3'])
def test_bad_profile_window_is_one_line(tmp_path, spec):
  with pytest.raises(cfg.ConfigError, match=r"config.profile=.* must be 'START:STOP'"):
    run(toy_config(profile=spec), str(tmp_path))
  assert not os.path.exists(tmp_path / 'config.json')


def test_workdir_that_is_a_file_is_refused_before_any_work(tmp_path):
  (tmp_path / 'f').write_text('')
  for workdir in (tmp_path / 'f', tmp_path / 'f' / 'sub'):
    with pytest.raises(cfg.ConfigError, match=f'{tmp_path / "f"} is a file, not a folder'):
      run(toy_config(), str(workdir))


def test_changed_config_is_refused_but_num_steps_may_grow(tmp_path):
  run(toy_config(num_steps=5), str(tmp_path))
  with pytest.raises(cfg.ConfigError, match='different config .*lr'):
    run(toy_config(num_steps=5, lr=0.1), str(tmp_path))
  state, _ = run(toy_config(num_steps=7), str(tmp_path))
  assert int(state.step) == 7


def test_early_stopping(tmp_path):
  c = toy_config(num_steps=200, eval_every=5,
                 early_stopping=dict(metric='eval_loss', mode='max', patience=1, min_delta=0.0))
  state, status = run(c, str(tmp_path))   # 'max' of a falling loss: stops early
  evals = [(r['step'], r['eval_loss']) for r in metrics.read(str(tmp_path), 'eval')]
  best, waited, expected = -np.inf, 0, None
  for step, v in evals:
    best, waited = (v, 0) if v > best else (best, waited + 1)
    if waited > 1:
      expected = step
      break
  assert status == 'early_stopped' and int(state.step) == expected < 200
  # Resuming replays the logged evals: still no improvement, so it stops at the next eval.
  state, status = run(c, str(tmp_path))
  assert status == 'early_stopped' and int(state.step) == expected + 5
  c.early_stopping.metric = 'nope'
  with pytest.raises(cfg.ConfigError, match="early_stopping.metric='nope'.*'eval_loss'"):
    run(c, str(tmp_path / 'x'))


def test_config_checks_name_the_field():
  c = ml_collections.ConfigDict(dict(optim=dict(lr=-1.0), kind='x', batch=6))
  with pytest.raises(cfg.ConfigError, match=r'config.optim.lr=-1.0 is invalid: must be > 0'):
    cfg.check_positive(c, 'optim.lr')
  with pytest.raises(cfg.ConfigError, match=r"config.kind='x' is invalid: allowed values are 'a', 'b'"):
    cfg.check_choice(c, 'kind', ('a', 'b'))
  with pytest.raises(cfg.ConfigError, match='divisible by 4'):
    cfg.check_divisible(c, 'batch', 4, 'devices')


def test_compile_step_compiles_once_for_the_calls_that_follow(monkeypatch):
  compiles, released = [], []
  real_compile = jax.stages.Lowered.compile
  monkeypatch.setattr(jax.stages.Lowered, 'compile',
                      lambda self, *a, **k: compiles.append(1) or real_compile(self, *a, **k))
  monkeypatch.setattr(loop, 'release_freed_memory', lambda: released.append(1))
  fn = jax.jit(lambda s, b, k: (s + b.sum(), {'loss': b.mean()}), donate_argnums=0)
  x = jnp.arange(6.0)
  loop.compile_step(fn, jnp.zeros(()), x, jax.random.key(0))
  assert compiles == [1] and released == [1]
  key, x1 = jax.random.key(0), x + 1
  step_compiles = lambda logs: [r for r in logs if r.startswith('Compiling jit(<lambda>)')]
  with jax.log_compiles(True), _count_logs('jax._src.interpreters.pxla') as logs:
    s, m = fn(jnp.zeros(()), x, key)
    s, m = fn(s, x1, key)
  assert float(s) == 36.0 and float(m['loss']) == 3.5
  assert not step_compiles(logs)
  fresh = jax.jit(lambda s, b, k: (s + b.sum(), {'loss': b.mean()}), donate_argnums=0)
  with jax.log_compiles(True), _count_logs('jax._src.interpreters.pxla') as logs:
    fresh(jnp.zeros(()), x, key)   # without compile_step the first call compiles
  assert len(step_compiles(logs)) == 1


class _count_logs:
  """Collects the messages logged under `name` (jax logs each compilation there)."""

  def __init__(self, name):
    import logging  # pylint: disable=g-import-not-at-top
    self.logger, self.messages = logging.getLogger(name), []
    self.handler = logging.Handler()
    self.handler.emit = lambda record: self.messages.append(record.getMessage())

  def __enter__(self):
    self.logger.addHandler(self.handler)
    return self.messages

  def __exit__(self, *exc):
    self.logger.removeHandler(self.handler)


def test_compiler_options_follow_the_config():
  assert loop.compiler_options(toy_config()) is None   # a config without the field: XLA's defaults
  assert loop.compiler_options(toy_config(xla_cpu_fusion_emitters=True)) is None
  assert loop.compiler_options(toy_config(xla_cpu_fusion_emitters=False)) == {
      'xla_cpu_use_fusion_emitters': False}
  assert loop.compiler_options(toy_config(xla_cpu_ynn_fusion_types='')) is None
  assert loop.compiler_options(toy_config(xla_cpu_ynn_fusion_types='reduce, eltwise',
                                          xla_cpu_fusion_emitters=False)) == {
      'xla_cpu_use_fusion_emitters': False,
      'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_ELTWISE'}
  with pytest.raises(cfg.ConfigError, match=r"xla_cpu_ynn_fusion_types='reduce,conv' is invalid: "
                                            r"'conv' not among dot, eltwise"):
    loop.check_fields(toy_config(xla_cpu_ynn_fusion_types='reduce,conv'), 1)


def test_ynn_fusion_types_take_convolutions_off_ynnpack():
  x, w = jnp.ones((2, 16, 16, 32)), jnp.ones((3, 3, 32, 32)) / 288   # YNNPACK takes it at this size
  f = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                                dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  hlo = lambda options: jax.jit(f, compiler_options=options).lower(x, w).compile().as_text()
  ynn = '"kind":"__ynn_fusion"'
  assert ynn in hlo(None)   # XLA's default: the convolution runs in a YNNPACK fusion
  options = loop.compiler_options(toy_config(xla_cpu_ynn_fusion_types='reduce,eltwise'))
  assert ynn not in hlo(options) and ' convolution(' in hlo(options)
  np.testing.assert_allclose(jax.jit(f, compiler_options=options)(x, w), f(x, w), rtol=1e-5)


def test_compile_task_compiles_init_and_step_with_the_options():
  task, mesh = toy_task(toy_config()), loop.sharding.make_mesh()
  init, step, put = loop.compile_task(task, mesh, {'xla_no_such_option': True})
  with pytest.raises(Exception, match='No such compile option'):
    init(jax.random.key(0))
  good_init = loop.compile_task(task, mesh)[0]
  state = good_init(jax.random.PRNGKey(0))
  with pytest.raises(Exception, match='No such compile option'):
    step.lower(state, put(task.train_batch(0)), jax.random.PRNGKey(1)).compile()
  # XLA's older emitters leave an elementwise op that feeds a reduction unfused; the newer ones
  # wrap it in a fusion of its own
  f = lambda x: jnp.tanh(x) * 2 + jnp.sin(x).sum()
  hlo = lambda options: jax.jit(f, compiler_options=options).lower(jnp.ones((64, 64))).compile().as_text()
  assert 'wrapped_sine' in hlo(None)
  assert 'wrapped_sine' not in hlo(loop.compiler_options(toy_config(xla_cpu_fusion_emitters=False)))


def test_older_cpu_emitters_train_to_the_same_result(tmp_path, monkeypatch):
  s_new, _ = run(toy_config(), str(tmp_path / 'new'))
  passed, compile_task = [], loop.compile_task
  monkeypatch.setattr(loop, 'compile_task',
                      lambda task, mesh, options=None: passed.append(options) or
                      compile_task(task, mesh, options))
  s_old, status = run(toy_config(xla_cpu_fusion_emitters=False, xla_cpu_ynn_fusion_types='reduce'),
                      str(tmp_path / 'old'))
  assert status == 'done'
  assert passed == [{'xla_cpu_use_fusion_emitters': False,
                     'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_REDUCE'}]
  np.testing.assert_allclose(s_old.params['w'], s_new.params['w'], rtol=1e-5)


def test_each_project_compiles_with_the_xla_options_its_benchmarks_chose():
  """README, Benchmarks: vrnn's compiler peak is its peak memory (older emitters); the conv
  models' convolutions and dots are faster on XLA's own kernels than on YNNPACK's."""
  import importlib  # pylint: disable=g-import-not-at-top
  reduce_only = {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_REDUCE'}
  expected = {'sps': reduce_only, 'vle': reduce_only, 'selfsup': reduce_only,
              'vrnn': {'xla_cpu_use_fusion_emitters': False}, 'unsup_video': None}
  for project, options in expected.items():
    config = importlib.import_module(f'configs.{project}').get_config()
    assert loop.compiler_options(config) == options, project
