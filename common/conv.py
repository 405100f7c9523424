"""2D convolutions (NHWC) that are fast on CPU as well as on GPU/TPU.

On CPU, XLA's strided and transposed convolutions (and the gradients of strided
convolutions) are an order of magnitude slower than a matmul of the same size.
The 'matmul' implementation therefore writes a convolution as patch extraction
(im2col) followed by one matmul, and its adjoint, the transposed convolution, as
one matmul followed by col2im (strided adds of the columns).  Both have
hand-written VJPs that reuse each other: the input gradient of a convolution is a
transposed convolution of the cotangent and vice versa, and the kernel gradient
is one matmul of the patches with the cotangent.  On GPU/TPU the 'lax'
implementation (`lax.conv_general_dilated`, i.e. cuDNN / TPU conv units) is used.

`impl` is one of 'auto' (off CPU 'lax'; on CPU a path per layer, see `layer_path`),
'matmul', 'lax', 'hybrid' (stride-1 layers: XLA's convolution forward and for the
input gradient, the patch matmul for the kernel gradient), or None (the module
default, see `set_default_impl`).  On CPU a 1x1 stride-1 unpadded convolution is
one plain matmul under 'auto', 'matmul' and 'hybrid'.  By default the matmul path
keeps only its input for the backward pass and extracts the patches again there
(`keep_patches`).  The custom paths support jit, vmap, grad and sharded batches but
not forward-mode autodiff (jvp), like any custom_vjp; use 'lax' for that.

Transposed convolution semantics follow PyTorch's `ConvTranspose2d` (without
output_padding): `conv_transpose2d(y, k, s, p)` is the exact adjoint of
`conv2d(x, k.swapaxes(2, 3), s, p)`, its output size is (in - 1) * s - 2p + k,
so kernel 4, stride 2, padding 1 maps HxW to 2Hx2W.  In terms of lax:

    conv_transpose2d(y, k, s, ((lo, hi), ...)) ==
        lax.conv_transpose(y, k.swapaxes(2, 3), s,
                           ((kh - 1 - lo, kh - 1 - hi), (kw - 1 - lo, ...)),
                           dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                           transpose_kernel=True)

Kernels are stored like flax: `Conv` as (kh, kw, in, out), `ConvTranspose` as
(kh, kw, in, out) as well.  Porting PyTorch weights:

    Conv:          kernel = torch_conv.weight.permute(2, 3, 1, 0)    # (O, I, kh, kw)
    ConvTranspose: kernel = torch_convt.weight.permute(2, 3, 0, 1)   # (I, O, kh, kw)
"""

import functools
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Padding = Union[str, int, Sequence[Tuple[int, int]]]
Pads = Tuple[Tuple[int, int], Tuple[int, int]]
_DN = ('NHWC', 'HWIO', 'NHWC')

IMPLS = ('auto', 'matmul', 'lax', 'hybrid')
PATHS = ('matmul', 'lax', 'lax_vjp', 's2d', 'hybrid', 'dot')
_default_impl = 'auto'

_SUPPORTED = ('kernel sizes 1-7, strides 1-2 with stride <= kernel, padding an int or '
              '((lo, hi), (lo, hi)) with 0 <= lo, hi < kernel, "SAME" or "VALID"')


def set_default_impl(impl: str) -> None:
  """Sets the implementation used when `impl=None` (e.g. from a `conv_impl` config field)."""
  global _default_impl
  if impl not in IMPLS:
    raise ValueError(f'conv impl must be one of {IMPLS}, got {impl!r}')
  _default_impl = impl


def get_default_impl() -> str:
  return _default_impl


def resolve_impl(impl: Optional[str] = None) -> str:
  """Maps None to the module default and 'auto' to 'lax' off CPU; on CPU 'auto' stays 'auto'
  and `layer_path` picks each layer's path."""
  impl = _default_impl if impl is None else impl
  if impl not in IMPLS:
    raise ValueError(f'conv impl must be one of {IMPLS}, got {impl!r}')
  if impl == 'auto' and jax.default_backend() != 'cpu':
    return 'lax'
  return impl


def _pair(v) -> Tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


def _resolve_padding(padding: Padding, ksize, strides, in_hw, transpose: bool) -> Pads:
  """Explicit ((lo, hi), (lo, hi)) padding of the (forward) convolution, validated.

  For a transposed convolution the padding is that of the convolution it is the
  adjoint of; 'SAME' then means output size = input size * stride.
  """
  def fail():
    kind = 'ConvTranspose' if transpose else 'Conv'
    raise ValueError(f'{kind}: unsupported kernel_size={tuple(ksize)} strides={tuple(strides)} '
                     f'padding={padding!r}; supported: {_SUPPORTED}')

  if isinstance(padding, str):
    if padding == 'VALID':
      pads = ((0, 0), (0, 0))
    elif padding == 'SAME' and transpose:
      pads = tuple(((k - s) // 2, k - s - (k - s) // 2) for k, s in zip(ksize, strides))
    elif padding == 'SAME':
      totals = (max((-(-n // s) - 1) * s + k - n, 0) for n, k, s in zip(in_hw, ksize, strides))
      pads = tuple((t // 2, t - t // 2) for t in totals)
    else:
      fail()
  elif isinstance(padding, int):
    pads = ((padding, padding), (padding, padding))
  else:
    pads = tuple(_pair(p) for p in padding)
  if len(ksize) != 2 or len(strides) != 2 or len(pads) != 2:
    fail()
  for k, s, (lo, hi) in zip(ksize, strides, pads):
    if not (1 <= k <= 7 and 1 <= s <= 2 and s <= k and 0 <= lo < k and 0 <= hi < k):
      fail()
  return pads


# ---------------------------------------------------------------------------
# Matmul implementation.  `w` is always the kernel of the forward convolution,
# (kh, kw, C, O), mapping C channels to O channels.

def _tap_index(n, k, s, pad):
  """Input index of each (output position, tap) along one axis, -1 inside the padding."""
  out = (n + pad[0] + pad[1] - k) // s + 1
  idx = s * np.arange(out)[:, None] + np.arange(k) - pad[0]
  return np.where((idx >= 0) & (idx < n), idx, -1)


def _im2col(x, ksize, strides, pads):
  """(N, H, W, C) -> patches (N, Ho, Wo, kh * kw * C), tap-major like w.reshape(-1, O).

  One gather along the flattened H * W axis with constant indices; taps in the
  padding read the out-of-bounds index H * W, which mode='fill' makes zero.  This
  measured faster than strided slices + concatenate, and needs no padded copy of x.
  """
  n, h, w, c = x.shape
  rows = _tap_index(h, ksize[0], strides[0], pads[0])  # (Ho, kh)
  cols = _tap_index(w, ksize[1], strides[1], pads[1])  # (Wo, kw)
  valid = (rows >= 0)[:, None, :, None] & (cols >= 0)[None, :, None, :]
  flat = np.where(valid, rows[:, None, :, None] * w + cols[None, :, None, :], h * w)
  p = x.reshape(n, h * w, c).at[:, flat.reshape(-1)].get(mode='fill', fill_value=0)
  return p.reshape(n, rows.shape[0], cols.shape[0], -1)


def _col2im(cols, ksize, strides, pads, out_hw):
  """Adjoint of _im2col: (N, Ho, Wo, kh * kw * C) -> (N, H, W, C).

  Tap (i, j) of patch (o, p) adds to input pixel (s*o + i - lo, s*p + j - lo).
  Output rows of one phase t = s*m + a receive only the taps i = s*q + r with
  r = (a + lo) % s, from patch row o = m + (a + lo) // s - q, so each phase is a
  sum of shifted column blocks and the phases are interleaved by a reshape; XLA
  fuses all of it (and a following bias/activation) into one pass.
  """
  (kh, kw), (sh, sw), (h, w) = ksize, strides, out_hw
  n, ho, wo, _ = cols.shape
  cols = cols.reshape(n, ho, wo, kh, kw, -1)
  lh, lw = -(-h // sh), -(-w // sw)  # rows/cols per phase
  zero = jnp.zeros((), cols.dtype)
  rows = []
  for a in range(sh):
    ra, da = (a + pads[0][0]) % sh, (a + pads[0][0]) // sh
    phases = []
    for b in range(sw):
      rb, db = (b + pads[1][0]) % sw, (b + pads[1][0]) // sw
      acc = 0
      for i in range(ra, kh, sh):
        for j in range(rb, kw, sw):
          q, r = i // sh - da, j // sw - db  # shift (negative: crop) of this tap's block
          acc = acc + lax.pad(cols[:, :, :, i, j], zero,
                              ((0, 0, 0), (q, lh - ho - q, 0), (r, lw - wo - r, 0), (0, 0, 0)))
      phases.append(acc)
    rows.append(jnp.stack(phases, axis=3))
  return jnp.stack(rows, axis=2).reshape(n, lh * sh, lw * sw, -1)[:, :h, :w]


def _mm(a, b):
  """(..., K) @ (K, N) -> (..., N)."""
  return lax.dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())))


def _conv_t_mm(y, w, strides, pads, out_hw):
  """Transposed convolution (adjoint of the convolution with w in its input): matmul, col2im."""
  kh, kw, _, o = w.shape
  return _col2im(_mm(y, w.reshape(-1, o).T), (kh, kw), strides, pads, out_hw)


def _kernel_grad(patches, g, wshape):
  """patches^T @ g summed over all pixels, as one matmul.

  Written as (g^T @ patches)^T on 2D views: a dot_general contracting the 4D
  batch/spatial dims makes XLA materialise a transpose of the (large) patches.
  """
  p, g = patches.reshape(-1, patches.shape[-1]), g.reshape(-1, g.shape[-1])
  return lax.dot_general(g, p, (((0,), (0,)), ((), ()))).T.reshape(wshape)


def _conv_fwd(x, w, strides, pads, keep_patches):
  p = _im2col(x, w.shape[:2], strides, pads)
  y = _mm(p, w.reshape(-1, w.shape[-1]))
  return y, ((p if keep_patches else x), w, x.shape[1:3])


def _conv_bwd(strides, pads, keep_patches, res, g):
  p, w, in_hw = res
  if not keep_patches:  # p is the input: extract its patches again, once g has arrived
    p = _im2col(_after(p, g), w.shape[:2], strides, pads)
  return _conv_t_mm(g, w, strides, pads, in_hw), _kernel_grad(p, g, w.shape)


def _after(x, y):
  """x, as a value XLA computes only after y.  Without this XLA merges the backward pass's
  patch extraction with the forward pass's identical one, or schedules it as early as x allows;
  either way the patches stay alive across the layers in between (sps's step: 241 MiB more
  temporaries).  `lax.optimization_barrier` does not survive XLA's CPU pipeline, a data
  dependency does: adding 0 * (one element of y) is exact while that element is finite."""
  return x + jnp.zeros((), x.dtype) * y.reshape(-1)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, pads, keep_patches=True):
  return _conv_fwd(x, w, strides, pads, keep_patches)[0]


_conv.defvjp(_conv_fwd, _conv_bwd)


def _conv_t_fwd(y, w, strides, pads, out_hw):
  return _conv_t_mm(y, w, strides, pads, out_hw), (y, w)


def _conv_t_bwd(strides, pads, out_hw, res, g):
  # The input gradient of a transposed convolution is the forward convolution.
  y, w = res
  p = _im2col(g, w.shape[:2], strides, pads)
  return _mm(p, w.reshape(-1, w.shape[-1])), _kernel_grad(p, y, w.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_t(y, w, strides, pads, out_hw):
  return _conv_t_mm(y, w, strides, pads, out_hw)


_conv_t.defvjp(_conv_t_fwd, _conv_t_bwd)


# ---------------------------------------------------------------------------
# Stride-1 convolutions on CPU: XLA's own stride-1 convolution (forward) and its
# input gradient (a stride-1 convolution with the flipped kernel) are fast, but
# its kernel gradient (a convolution whose kernel is the whole image) is slow, so
# that one gradient is the patch matmul.  Only x and w are kept for the backward
# pass: in a scan, saved patches would be stacked over the steps (kh * kw times
# the input), which costs more than extracting them again.

def _lax_conv(x, w, strides, pads):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_lax_dw_mm(x, w, strides, pads):
  return _lax_conv(x, w, strides, pads)


def _conv_lax_dw_mm_fwd(x, w, strides, pads):
  return _lax_conv(x, w, strides, pads), (x, w)


def _conv_lax_dw_mm_bwd(strides, pads, res, g):
  x, w = res
  dx = _input_grad(g, w, pads)   # hybrid layers are stride-1 (layer_path)
  x = lax.optimization_barrier(x)  # else XLA fuses x's producers (norm, relu) into the patches
  return dx, _kernel_grad(_im2col(x, w.shape[:2], strides, pads), g, w.shape)


_conv_lax_dw_mm.defvjp(_conv_lax_dw_mm_fwd, _conv_lax_dw_mm_bwd)


# ---------------------------------------------------------------------------
# 'lax_vjp' (stride 1): XLA's convolution, with a backward pass of two more that are already in
# XLA's canonical dimension order (NHWC input, HWIO kernel, NHWC output).  Plain autodiff's
# backward convolutions carry other orders (a kernel as 01oi, a batch-as-feature kernel
# gradient f01b_i01o->01bf); XLA's CPU pipeline puts those back in order outside loop bodies,
# but inside one (a lax.scan) they fall to a naive loop 50-100x slower.

@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_xla(x, w, pads):
  return _lax_conv(x, w, (1, 1), pads)


def _conv_xla_fwd(x, w, pads):
  return _lax_conv(x, w, (1, 1), pads), (x, w)


def _input_grad(g, w, pads):
  """A stride-1 convolution's input gradient in XLA's canonical order: g correlated with the
  kernel flipped in space, in and out swapped."""
  flipped = jnp.flip(w, (0, 1)).swapaxes(2, 3)
  return _lax_conv(g, flipped, (1, 1), tuple((k - 1 - lo, k - 1 - hi)
                                            for k, (lo, hi) in zip(w.shape[:2], pads)))


def _conv_xla_bwd(pads, res, g):
  x, w = res
  dx = _input_grad(g, w, pads)
  # dw[a, b, c, o] = sum_{n,i,j} xpad[n, i+a, j+b, c] g[n, i, j, o]: x's channels as the batch,
  # its batch as the features, g as an (Ho, Wo, N, O) kernel; the output is (C, kh, kw, O)
  dw = _lax_conv(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), (1, 1), pads)
  return dx, dw.transpose(1, 2, 0, 3)


_conv_xla.defvjp(_conv_xla_fwd, _conv_xla_bwd)


# 's2d' (stride 2, even kernel): the convolution of the space-to-depth input (each 2x2 block's
# pixels as channels) with the kernel rearranged alike, a stride-1 convolution of half the
# kernel size and the same flops, with the 'lax_vjp' backward pass.  Exact; XLA's CPU
# convolution does it faster than the patch matmuls (vle's k4 s2 encoder layers 1.6-2x).  Only
# x is kept for the backward pass, which rearranges it again once the cotangent has arrived
# (_after): keeping the padded, rearranged input cost sps's step 70 MiB more temporaries.

def _space_to_depth(x):
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(
      n, h // 2, w // 2, 4 * c)


def _s2d_pads(in_hw, pads):
  """The pads, with one more zero row (column) at the end where the padded size is odd: that
  adds one output, cut off again."""
  return tuple((lo, hi + (n + lo + hi) % 2) for n, (lo, hi) in zip(in_hw, pads))


def _s2d_operands(x, w, pads):
  kh, kw, c, o = w.shape
  x = jnp.pad(x, ((0, 0), *_s2d_pads(x.shape[1:3], pads), (0, 0)))
  w = w.reshape(kh // 2, 2, kw // 2, 2, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(
      kh // 2, kw // 2, 4 * c, o)
  return _space_to_depth(x), w


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_s2d(x, w, pads, out_hw):
  return _conv_s2d_fwd(x, w, pads, out_hw)[0]


def _conv_s2d_fwd(x, w, pads, out_hw):
  y = _lax_conv(*_s2d_operands(x, w, pads), (1, 1), ((0, 0), (0, 0)))
  return y[:, :out_hw[0], :out_hw[1]], (x, w)


def _conv_s2d_bwd(pads, out_hw, res, g):
  x, w = res
  (xs, ws), operands_vjp = jax.vjp(lambda x, w: _s2d_operands(x, w, pads), _after(x, g), w)
  full = [n - k + 1 for n, k in zip(xs.shape[1:3], ws.shape[:2])]   # before the cut
  g = jnp.pad(g, ((0, 0), (0, full[0] - out_hw[0]), (0, full[1] - out_hw[1]), (0, 0)))
  return operands_vjp(_conv_xla_bwd(((0, 0), (0, 0)), (xs, ws), g))


_conv_s2d.defvjp(_conv_s2d_fwd, _conv_s2d_bwd)


def _conv_1x1(x, w):
  """A 1x1 stride-1 unpadded convolution is one matmul over the channels (plain autodiff:
  on 2D views its kernel gradient is one matmul too, see _kernel_grad)."""
  n, h, wd, c = x.shape
  return _mm(x.reshape(-1, c), w.reshape(c, -1)).reshape(n, h, wd, -1)


# ---------------------------------------------------------------------------
# Public functions.

def _check_size(kind, xshape, kshape, strides, pads, out_hw):
  if len(xshape) != 4 or len(kshape) != 4 or xshape[-1] != kshape[2]:
    raise ValueError(f'{kind}: expected x (N, H, W, C) and kernel (kh, kw, C, O), '
                     f'got x {xshape} and kernel {kshape}')
  if min(out_hw) < 1:
    raise ValueError(f'{kind}: input {xshape[1:3]} too small for kernel_size={kshape[:2]} '
                     f'strides={strides} padding={pads} (output size {tuple(out_hw)})')



def layer_path(impl: Optional[str], transpose: bool, ksize, strides, pads) -> str:
  """The path one layer takes: one of PATHS.

  Off CPU 'auto' is 'lax' (cuDNN / TPU convolutions).  On CPU, measured by
  `python -m benchmarks.conv` (every layer shape of the projects, forward + backward) and by the
  projects' train steps, 'auto' sends
    - a 1x1 stride-1 unpadded convolution to one plain matmul ('dot');
    - any other stride-1 convolution to XLA's own with its backward pass written out as two
      more in XLA's canonical order ('lax_vjp'): 1.5-3x faster than the patch matmuls at every
      such layer of the projects, and unlike plain autodiff ('lax') as fast inside a loop body
      (`lax.scan`, vle's token steps) as outside;
    - a stride-2 convolution with an even kernel (k4 s2) to the stride-1 convolution of its
      space-to-depth input ('s2d'), exact and 1.05-2x faster than the patch matmuls;
    - other strided and all transposed convolutions to the patch matmuls ('matmul'): XLA's
      take seconds (the transposed ones also as the adjoint of 's2d').
  'hybrid' sends stride-1 layers (k > 1) to XLA's forward and input gradient with the
  patch-matmul kernel gradient, the rest to 'matmul'.
  """
  impl = resolve_impl(impl)
  if impl == 'lax':
    return 'lax'
  stride1 = tuple(strides) == (1, 1) and not transpose
  if stride1 and tuple(ksize) == (1, 1) and pads == ((0, 0), (0, 0)):
    return 'dot'
  if stride1 and impl == 'hybrid':
    return 'hybrid'
  if stride1 and impl == 'auto':
    return 'lax_vjp'
  if (impl == 'auto' and not transpose and tuple(strides) == (2, 2)
      and all(k % 2 == 0 for k in ksize)):
    return 's2d'
  return 'matmul'


def conv2d(x, kernel, strides=(1, 1), padding: Padding = 'SAME', impl: Optional[str] = None,
           keep_patches: bool = False):
  """Convolution of x (N, H, W, C) with kernel (kh, kw, C, O) -> (N, Ho, Wo, O).

  keep_patches (the 'matmul' path): keep the patches for the backward pass (True), or only x
  and extract them again there (False: less memory, one more patch extraction; faster inside
  a `lax.scan` body, whose saved values are stacked over its steps).
  """
  strides = _pair(strides)
  pads = _resolve_padding(padding, kernel.shape[:2], strides, x.shape[1:3], transpose=False)
  out_hw = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in
            zip(x.shape[1:3], kernel.shape[:2], strides, pads)]
  _check_size('Conv', x.shape, kernel.shape, strides, pads, out_hw)
  path = layer_path(impl, False, kernel.shape[:2], strides, pads)
  if path == 's2d':
    return _conv_s2d(x, kernel, pads, tuple(out_hw))
  if path == 'lax':
    return _lax_conv(x, kernel, strides, pads)
  if path == 'lax_vjp':
    return _conv_xla(x, kernel, pads)
  if path == 'dot':
    return _conv_1x1(x, kernel)
  if path == 'hybrid':
    return _conv_lax_dw_mm(x, kernel, strides, pads)
  return _conv(x, kernel, strides, pads, keep_patches)


def conv_transpose2d(x, kernel, strides=(1, 1), padding: Padding = 'SAME',
                     impl: Optional[str] = None):
  """PyTorch-style transposed convolution of x (N, H, W, Cin), kernel (kh, kw, Cin, Cout).

  The adjoint of `conv2d(., kernel.swapaxes(2, 3), strides, padding)`; output
  size (in - 1) * stride + kernel - lo - hi.
  """
  strides = _pair(strides)
  ksize = kernel.shape[:2]
  pads = _resolve_padding(padding, ksize, strides, None, transpose=True)
  out_hw = tuple((n - 1) * s + k - lo - hi
                 for n, s, k, (lo, hi) in zip(x.shape[1:3], strides, ksize, pads))
  _check_size('ConvTranspose', x.shape, kernel.shape, strides, pads, out_hw)
  if layer_path(impl, True, ksize, strides, pads) == 'lax':
    lax_pads = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(ksize, pads))
    return lax.conv_transpose(x, kernel.swapaxes(2, 3), strides, lax_pads,
                              dimension_numbers=_DN, transpose_kernel=True)
  return _conv_t(x, kernel.swapaxes(2, 3), strides, pads, out_hw)


# ---------------------------------------------------------------------------
# Flax modules.

class _ConvModule(nn.Module):
  """Fields and parameters shared by Conv and ConvTranspose (like flax's)."""
  features: int
  kernel_size: Sequence[int]
  strides: Union[int, Sequence[int]] = 1
  padding: Padding = 'SAME'
  use_bias: bool = True
  impl: Optional[str] = None  # None: the module default, see set_default_impl
  dtype: Optional[Any] = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros
  keep_patches: bool = False  # Conv only, see conv2d; ConvTranspose keeps only its input

  @nn.compact
  def __call__(self, x):
    kshape = (*self.kernel_size, x.shape[-1], self.features)
    kernel = self.param('kernel', self.kernel_init, kshape, self.param_dtype)
    bias = (self.param('bias', self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = self._op(x, kernel, self.strides, self.padding, self.impl)
    return y if bias is None else y + bias


class Conv(_ConvModule):
  """`flax.linen.Conv` for 2D NHWC inputs with a selectable implementation.

  kernel (kh, kw, in, features), bias (features,); padding an int p, explicit
  ((lo, hi), (lo, hi)), 'SAME' or 'VALID'.
  """
  def _op(self, x, kernel, strides, padding, impl):
    return conv2d(x, kernel, strides, padding, impl, self.keep_patches)


class ConvTranspose(_ConvModule):
  """PyTorch `ConvTranspose2d` semantics (without output_padding), NHWC.

  The adjoint of `Conv` with the same kernel size, strides and padding; kernel
  (kh, kw, in, features), see the module docstring for the lax and PyTorch
  equivalents.  padding='SAME' gives output size input * stride.
  """
  def _op(self, x, kernel, strides, padding, impl):
    return conv_transpose2d(x, kernel, strides, padding, impl)
