"""Tests for common.conv: values and gradients against lax references, float64."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from common import conv as C

DN = ('NHWC', 'HWIO', 'NHWC')
IMPLS = ('matmul', 'lax', 'hybrid', 'auto')
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (kernel, stride, padding) for Conv and ConvTranspose.
CONV_CASES = [(4, 2, 1), (3, 1, 1), (3, 2, 1), (1, 1, 0)] + [
    (k, s, p) for k in range(1, 8) for s in (1, 2) if s <= k for p in ('SAME', 'VALID')]
CONV_T_CASES = [(4, 2, 1), (3, 1, 1), (3, 2, 1), (1, 1, 0), (4, 2, 'SAME'), (3, 2, 'VALID')]


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def _rand(seed, *shape):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def _lax_padding(p):
  return p if isinstance(p, str) else ((p, p), (p, p))


def _ref_conv(x, w, b, s, p):
  return lax.conv_general_dilated(x, w, (s, s), _lax_padding(p), dimension_numbers=DN) + b


def _ref_conv_t(y, w, b, s, p):
  """Transposed conv as the VJP of lax's convolution (w: (kh, kw, in, out) of the transpose)."""
  k = w.shape[0]
  out_hw = [n * s if p == 'SAME' else (n - 1) * s + k - 2 * (0 if p == 'VALID' else p)
            for n in y.shape[1:3]]
  x0 = jnp.zeros((y.shape[0], *out_hw, w.shape[-1]), y.dtype)
  _, vjp = jax.vjp(lambda x: lax.conv_general_dilated(x, w.swapaxes(2, 3), (s, s),
                                                      _lax_padding(p), dimension_numbers=DN), x0)
  return vjp(y)[0] + b


def _check_value_and_grads(fn, ref, *args):
  """fn and ref agree in value and in the gradients of <output, random cotangent>."""
  ct = _rand(99, *jax.eval_shape(ref, *args).shape)
  both = jax.jit(lambda *a: [(f(*a), *jax.vjp(f, *a)[1](ct)) for f in (fn, ref)])
  _assert_close(*both(*args))


def _assert_close(got, want, atol=1e-10):
  for g, w in zip(got, want):
    assert g.shape == w.shape and g.dtype == w.dtype
    np.testing.assert_allclose(g, w, atol=atol, rtol=0)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('k,s,p', CONV_CASES)
def test_conv_matches_lax(k, s, p, impl):
  x, w, b = _rand(0, 2, 9, 8, 3), _rand(1, k, k, 3, 5), _rand(2, 5)  # odd and even sizes
  _check_value_and_grads(lambda x, w, b: C.conv2d(x, w, s, p, impl) + b,
                         lambda x, w, b: _ref_conv(x, w, b, s, p), x, w, b)


@pytest.mark.parametrize('k,s,p', [(4, 2, 1), (3, 1, 1), (3, 2, 'SAME'), (5, 1, 'VALID')])
def test_conv_keeping_patches_or_input_gives_the_same_gradients(k, s, p):
  x, w, b = _rand(0, 2, 9, 8, 3), _rand(1, k, k, 3, 5), _rand(2, 5)
  for keep in (True, False):
    _check_value_and_grads(lambda x, w, b: C.conv2d(x, w, s, p, 'matmul', keep) + b,
                           lambda x, w, b: _ref_conv(x, w, b, s, p), x, w, b)


def test_backward_extracts_patches_again_instead_of_keeping_the_forward_ones():
  """keep_patches=False: the backward pass's extraction is neither merged with the forward
  pass's nor scheduled before its cotangent arrives (XLA would do either, keeping the patches
  alive across the layers in between), so an encoder-decoder like sps's plans fewer bytes of
  temporaries for its gradient than with the patches kept (measured 4.75 against 7.4 MiB; the
  same 7.4 without the dependency on the cotangent)."""
  x = _rand(0, 32, 32, 32, 3)
  ch = (3, 16, 32, 64)
  enc = [_rand(1 + i, 4, 4, ch[i], ch[i + 1]) * 0.1 for i in range(3)]
  dec = [_rand(4 + i, 4, 4, ch[3 - i], ch[2 - i]) * 0.1 for i in range(3)]

  def temporaries(keep):
    def loss(enc, dec):
      h = x
      for w in enc:
        h = jax.nn.relu(C.conv2d(h, w, 2, 1, 'matmul', keep))
      for w in dec:
        h = jax.nn.relu(C.conv_transpose2d(h, w, 2, 1, 'matmul'))
      return jnp.square(h - x).sum()
    compiled = jax.jit(jax.grad(loss, (0, 1))).lower(enc, dec).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  assert temporaries(False) < 0.8 * temporaries(True)


def test_s2d_backward_rearranges_its_input_again_and_plans_no_more_than_the_patch_path():
  """'auto' sends the encoder's k4 s2 layers to 's2d', which keeps only x for the backward
  pass: the gradient plans no more temporaries than with the patch matmuls (measured 9.1
  against 9.5 MiB; 11.1 when XLA may merge the backward rearrangement with the forward one)."""
  x = _rand(0, 32, 32, 32, 3)
  ch = (3, 16, 32, 64)
  enc = [_rand(1 + i, 4, 4, ch[i], ch[i + 1]) * 0.1 for i in range(3)]
  dec = [_rand(4 + i, 4, 4, ch[3 - i], ch[2 - i]) * 0.1 for i in range(3)]

  def temporaries(impl):
    def loss(enc, dec):
      h = x
      for w in enc:
        h = jax.nn.relu(C.conv2d(h, w, 2, 1, impl))
      for w in dec:
        h = jax.nn.relu(C.conv_transpose2d(h, w, 2, 1, 'matmul'))
      return jnp.square(h - x).sum()
    compiled = jax.jit(jax.grad(loss, (0, 1))).lower(enc, dec).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  assert C.layer_path('auto', False, (4, 4), (2, 2), ((1, 1), (1, 1))) == 's2d'
  assert temporaries('auto') <= temporaries('matmul')


@pytest.mark.parametrize('impl', ['matmul', 'hybrid', 'auto'])
def test_conv_inside_scan_matches_lax(impl):
  """A scan body saves its residuals per step: the gradients through 3 steps of a conv."""
  x, w = _rand(0, 2, 6, 6, 4), _rand(1, 3, 3, 4, 4) * 0.3

  def unroll(conv):
    def run(x, w):
      body = lambda h, _: (jnp.tanh(conv(h, w)), None)
      return lax.scan(body, x, None, length=3)[0]
    return run

  _check_value_and_grads(unroll(lambda h, w: C.conv2d(h, w, 1, 1, impl)),
                         unroll(lambda h, w: _ref_conv(h, w, 0.0, 1, 1)), x, w)


def test_layer_path_rule():
  pads1, pads0 = ((1, 1), (1, 1)), ((0, 0), (0, 0))
  path = C.layer_path
  assert path('lax', False, (3, 3), (1, 1), pads1) == 'lax'
  for impl in ('auto', 'matmul'):  # tests run on CPU
    assert path(impl, False, (1, 1), (1, 1), pads0) == 'dot'
    assert path(impl, False, (1, 1), (2, 2), pads0) == 'matmul'
    assert path(impl, False, (3, 3), (2, 2), pads1) == 'matmul'
    assert path(impl, True, (3, 3), (1, 1), pads1) == 'matmul'
    assert path(impl, True, (4, 4), (2, 2), pads1) == 'matmul'
  assert path('auto', False, (4, 4), (2, 2), pads1) == 's2d'    # even kernel, stride 2
  assert path('auto', False, (2, 4), (2, 2), pads0) == 's2d'
  assert path('auto', False, (3, 4), (2, 2), pads1) == 'matmul'
  assert path('matmul', False, (4, 4), (2, 2), pads1) == 'matmul'
  assert path('auto', False, (3, 3), (1, 1), pads1) == 'lax_vjp'  # XLA's stride-1 conv is faster
  assert path('matmul', False, (3, 3), (1, 1), pads1) == 'matmul'
  assert path('hybrid', False, (3, 3), (1, 1), pads1) == 'hybrid'
  assert path('hybrid', False, (4, 4), (2, 2), pads1) == 'matmul'
  assert path('hybrid', True, (3, 3), (1, 1), pads1) == 'matmul'
  x, w1, w3, w4 = (_rand(0, 1, 8, 8, 3), _rand(1, 1, 1, 3, 4), _rand(2, 3, 3, 3, 4),
                   _rand(3, 4, 4, 3, 4))
  jaxpr = lambda f: str(jax.make_jaxpr(f)(x))
  assert 'custom_vjp_call' not in jaxpr(lambda x: C.conv2d(x, w1, 1, 0, 'auto'))
  assert 'conv_general_dilated' not in jaxpr(lambda x: C.conv2d(x, w1, 1, 0, 'auto'))
  auto3 = jaxpr(lambda x: C.conv2d(x, w3, 1, 1, 'auto'))
  assert 'conv_general_dilated' in auto3 and 'custom_vjp_call' in auto3
  plain = jaxpr(lambda x: C.conv2d(x, w3, 1, 1, 'lax'))
  assert 'conv_general_dilated' in plain and 'custom_vjp_call' not in plain
  auto4 = jaxpr(lambda x: C.conv2d(x, w4, 2, 1, 'auto'))   # s2d: a stride-1 lax_vjp conv
  assert 'conv_general_dilated' in auto4 and 'window_strides=(1, 1)' in auto4
  matmul4 = jaxpr(lambda x: C.conv2d(x, w4, 2, 1, 'matmul'))
  assert 'conv_general_dilated' not in matmul4 and 'custom_vjp_call' in matmul4
  assert 'conv_general_dilated' not in jaxpr(lambda x: C.conv2d(x, w3, 1, 1, 'matmul'))
  hybrid = jaxpr(lambda x: C.conv2d(x, w3, 1, 1, 'hybrid'))
  assert 'custom_vjp_call' in hybrid and 'conv_general_dilated' in hybrid


def conv_orders(fn, *args):
  """The dimension orders (dim_labels) of the convolutions in XLA's compiled `fn`."""
  hlo = jax.jit(fn).lower(*args).compile().as_text()
  return {line.split('dim_labels=')[1].split(',')[0] for line in hlo.splitlines()
          if ' convolution(' in line}


def test_stride1_backward_stays_in_xla_canonical_order_inside_a_scan():
  """'auto' writes a stride-1 layer's backward pass as convolutions in XLA's canonical order:
  plain autodiff's ('lax') are in others, which XLA's CPU backend runs 50-100x slower in a
  loop body (python -m benchmarks.conv, the in-scan rows)."""
  x, w = _rand(0, 2, 8, 8, 4), _rand(1, 3, 3, 4, 8) * 0.3

  def grad_of_scan(impl):
    def loss(x, w):
      body = lambda h, _: (jnp.tanh(C.conv2d(h, w, 1, 1, impl)[..., :4]), None)
      return jnp.sum(lax.scan(body, x, None, length=2)[0])
    return jax.grad(loss, (0, 1))

  assert conv_orders(grad_of_scan('auto'), x, w) == {'b01f_01io->b01f'}
  assert len(conv_orders(grad_of_scan('lax'), x, w)) > 1


@pytest.mark.parametrize('hw', [(8, 10), (9, 7)])   # even and odd padded sizes
def test_s2d_path_with_uneven_padding_and_a_rectangular_kernel(hw):
  x, w, b = _rand(0, 2, *hw, 3), _rand(1, 4, 2, 3, 5), _rand(2, 5)
  pads = ((1, 2), (0, 1))
  assert C.layer_path('auto', False, (4, 2), (2, 2), pads) == 's2d'
  _check_value_and_grads(
      lambda x, w, b: C.conv2d(x, w, 2, pads, 'auto') + b,
      lambda x, w, b: lax.conv_general_dilated(x, w, (2, 2), pads, dimension_numbers=DN) + b,
      x, w, b)


def test_stride1_vjp_path_with_uneven_padding_and_a_rectangular_kernel():
  x, w, b = _rand(0, 2, 7, 9, 3), _rand(1, 3, 5, 3, 4), _rand(2, 4)
  pads = ((1, 0), (2, 1))
  _check_value_and_grads(
      lambda x, w, b: C.conv2d(x, w, 1, pads, 'auto') + b,
      lambda x, w, b: lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=DN) + b,
      x, w, b)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('k,s,p', CONV_T_CASES)
def test_conv_transpose_matches_vjp_of_lax(k, s, p, impl):
  y, w, b = _rand(0, 2, 5, 4, 5), _rand(1, k, k, 5, 3), _rand(2, 3)
  _check_value_and_grads(lambda y, w, b: C.conv_transpose2d(y, w, s, p, impl) + b,
                         lambda y, w, b: _ref_conv_t(y, w, b, s, p), y, w, b)


def test_conv_transpose_is_adjoint_of_conv():
  x, w, y = _rand(0, 2, 8, 6, 3), _rand(1, 4, 4, 3, 5), _rand(2, 2, 4, 3, 5)
  lhs, rhs = jax.jit(lambda x, w, y: (
      jnp.vdot(C.conv2d(x, w, 2, 1, 'matmul'), y),
      jnp.vdot(x, C.conv_transpose2d(y, w.swapaxes(2, 3), 2, 1, 'matmul'))))(x, w, y)
  np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_conv_transpose_equals_documented_lax_conv_transpose():
  y, w = _rand(0, 2, 5, 4, 6), _rand(1, 4, 4, 6, 3)
  got = C.conv_transpose2d(y, w, 2, 1, 'matmul')
  want = lax.conv_transpose(y, w.swapaxes(2, 3), (2, 2), ((2, 2), (2, 2)),
                            dimension_numbers=DN, transpose_kernel=True)
  _assert_close([got], [want])


@pytest.mark.parametrize('transpose', [False, True])
def test_jit_and_vmap_over_seeds(transpose):
  op = C.conv_transpose2d if transpose else C.conv2d
  ref = _ref_conv_t if transpose else _ref_conv

  def loss(fn, x, w):
    return jnp.sum(jnp.sin(fn(x, w)))

  xs = jnp.stack([_rand(seed, 2, 6, 7, 3) for seed in range(4)])
  ws = jnp.stack([_rand(10 + seed, 4, 4, 3, 4) for seed in range(4)])
  step = jax.jit(jax.vmap(jax.value_and_grad(
      lambda x, w: loss(lambda x, w: op(x, w, 2, 1, 'matmul'), x, w), argnums=(0, 1))))
  val, (gx, gw) = step(xs, ws)
  for i in range(4):
    want_val, (want_gx, want_gw) = jax.value_and_grad(
        lambda x, w: loss(lambda x, w: ref(x, w, 0.0, 2, 1), x, w), argnums=(0, 1))(xs[i], ws[i])
    _assert_close([val[i], gx[i], gw[i]], [want_val, want_gx, want_gw])


def test_modules_params_shapes_and_output_sizes():
  x = _rand(0, 2, 8, 6, 3)
  conv = C.Conv(7, (4, 4), (2, 2), 1, impl='matmul')
  params = conv.init(jax.random.key(0), x)['params']
  assert params['kernel'].shape == (4, 4, 3, 7) and params['bias'].shape == (7,)
  assert conv.apply({'params': params}, x).shape == (2, 4, 3, 7)

  convt = C.ConvTranspose(5, (4, 4), (2, 2), 1, impl='matmul')
  params = convt.init(jax.random.key(0), x)['params']
  assert params['kernel'].shape == (4, 4, 3, 5) and params['bias'].shape == (5,)
  assert convt.apply({'params': params}, x).shape == (2, 16, 12, 5)
  same = C.ConvTranspose(5, (4, 4), (2, 2), 'SAME', use_bias=False)
  assert same.apply(same.init(jax.random.key(0), x), x).shape == (2, 16, 12, 5)


def test_module_dtype_and_bias():
  x = _rand(0, 2, 8, 8, 3)
  conv = C.Conv(4, (3, 3), 1, 1, impl='matmul', dtype=jnp.float32)
  params = conv.init(jax.random.key(0), x)['params']
  params['bias'] = jnp.arange(4.0)
  y = conv.apply({'params': params}, x)
  assert y.dtype == jnp.float32
  want = _ref_conv(x, params['kernel'].astype(x.dtype), params['bias'], 1, 1)
  np.testing.assert_allclose(y, want, atol=1e-5)


def test_impl_selection():
  assert C.resolve_impl('auto') == 'auto'  # tests run on CPU: layer_path decides per layer
  assert C.resolve_impl('lax') == 'lax'
  x, w = _rand(0, 1, 8, 8, 3), _rand(1, 4, 4, 3, 4)
  old = C.get_default_impl()
  try:
    for default, prim in (('lax', 'conv_general_dilated'), ('matmul', 'custom_vjp_call')):
      C.set_default_impl(default)
      assert C.resolve_impl(None) == default
      jaxpr = str(jax.make_jaxpr(lambda x: C.Conv(4, (4, 4), 2, 1).init_with_output(
          jax.random.key(0), x)[0])(x))
      assert prim in jaxpr
    with pytest.raises(ValueError, match='conv impl'):
      C.set_default_impl('cudnn')
  finally:
    C.set_default_impl(old)
  w3 = _rand(2, 3, 3, 3, 4)   # 'auto' sends a 3x3 stride-2 layer to the patch matmuls on CPU
  assert 'conv_general_dilated' not in str(jax.make_jaxpr(
      lambda x, w: C.conv2d(x, w, 2, 1, 'auto'))(x, w3))


@pytest.mark.parametrize('fn,k,s,p', [
    (C.conv2d, 9, 1, 4), (C.conv2d, 3, 3, 1), (C.conv2d, 3, 1, 3), (C.conv2d, 3, 1, 'FULL'),
    (C.conv_transpose2d, 2, 1, 2), (C.conv_transpose2d, 1, 2, 0)])
def test_unsupported_combination_raises_clear_error(fn, k, s, p):
  with pytest.raises(ValueError) as err:
    fn(_rand(0, 1, 8, 8, 3), _rand(1, k, k, 3, 4), s, p, 'matmul')
  msg = str(err.value)
  assert '\n' not in msg and f'kernel_size={(k, k)}' in msg and f'strides={(s, s)}' in msg
  assert f'padding={p!r}' in msg and 'supported' in msg


def test_sharded_step_matches_single_device():
  script = textwrap.dedent('''
      import json
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
      from common.conv import Conv, ConvTranspose
      import flax.linen as nn

      class AE(nn.Module):
        @nn.compact
        def __call__(self, x):
          h = nn.relu(Conv(8, (4, 4), 2, 1, impl='matmul')(x))
          h = nn.relu(Conv(8, (3, 3), 1, 1, impl='matmul')(h))
          return ConvTranspose(3, (4, 4), 2, 1, impl='matmul')(h)

      assert jax.device_count() == 8
      x = jnp.asarray(np.random.default_rng(0).standard_normal((16, 8, 8, 3)), jnp.float32)
      model = AE()
      params = model.init(jax.random.key(0), x)
      step = jax.value_and_grad(lambda p, x: jnp.mean((model.apply(p, x) - x) ** 2))
      ref = jax.jit(step)(params, x)
      mesh = Mesh(np.array(jax.devices()), ('data',))
      xs = jax.device_put(x, NamedSharding(mesh, P('data')))
      params = jax.device_put(params, NamedSharding(mesh, P()))
      out = jax.jit(step)(params, xs)
      assert len(xs.sharding.device_set) == 8
      diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), out, ref)
      print(json.dumps(max(jax.tree.leaves(diff))))
  ''')
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu', PYTHONPATH=REPO)
  res = subprocess.run([sys.executable, '-c', script], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=120)
  assert res.returncode == 0, res.stderr[-2000:]
  assert json.loads(res.stdout.strip().splitlines()[-1]) < 1e-5


def test_matches_torch_with_ported_weights():
  torch = pytest.importorskip('torch')
  x = _rand(0, 2, 8, 6, 3)
  for transpose, (k, s, p) in [(False, (4, 2, 1)), (False, (3, 1, 1)), (True, (4, 2, 1)),
                               (True, (3, 2, 1))]:
    module = (C.ConvTranspose if transpose else C.Conv)(5, (k, k), s, p, impl='matmul',
                                                         param_dtype=jnp.float64)
    params = module.init(jax.random.key(0), x)['params']
    params['bias'] = _rand(3, 5)
    got = module.apply({'params': params}, x)
    kernel = np.asarray(params['kernel'])
    tmod = (torch.nn.ConvTranspose2d if transpose else torch.nn.Conv2d)(3, 5, k, s, p).double()
    with torch.no_grad():
      tmod.weight.copy_(torch.from_numpy(kernel.transpose((2, 3, 0, 1) if transpose
                                                          else (3, 2, 0, 1)).copy()))
      tmod.bias.copy_(torch.from_numpy(np.array(params['bias'])))
      want = tmod(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(got, want.numpy().transpose(0, 2, 3, 1), atol=1e-10)
