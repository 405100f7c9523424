"""The JAX selfsup model's weights in its PyTorch twin (`benchmarks/torch_selfsup.py`): which torch
parameter or BatchNorm buffer each flax array is, in torch's layout, and the copy."""
import numpy as np
import torch
from torch import nn

from benchmarks import torch_selfsup as tss


def torch_layout(a):
  """A flax array in its torch parameter's layout: conv kernels (kh, kw, in, out) ->
  (out, in, kh, kw), Dense kernels (in, out) -> (out, in), vectors as they are."""
  a = np.asarray(a, np.float32)
  return a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T if a.ndim == 2 else a


def _norm_name(norm):
  return 'BatchNorm' if isinstance(norm, nn.modules.batchnorm._BatchNorm) else 'GroupNorm'


def named_pairs(model, params):
  """[(torch parameter, flax array)] for every parameter of the twin, in flax's layout.

  `params`: the flax 'params' collection ({'encoder', 'project', 'head'}) or any tree of its
  structure (shapes, gradients)."""
  pairs = []

  def norm(mod, q):
    pairs.extend([(mod.weight, q['scale']), (mod.bias, q['bias'])])

  def mlp(mod, q):
    for i, layer in enumerate(mod.hidden):
      pairs.append((layer.weight, q[f'Dense_{i}']['kernel']))
      if layer.bias is not None:
        pairs.append((layer.bias, q[f'Dense_{i}']['bias']))
      if mod.norms is not None:
        norm(mod.norms[i], q[f'BatchNorm_{i}'])
    q_out = q[f'Dense_{len(mod.hidden)}']
    pairs.extend([(mod.out.weight, q_out['kernel']), (mod.out.bias, q_out['bias'])])

  enc, e = model.encoder, params['encoder']
  pairs.append((enc.stem.weight, e['Conv_0']['kernel']))
  norm(enc.stem_norm, e[f'{_norm_name(enc.stem_norm)}_0'])
  for i, block in enumerate(enc.blocks):
    q, kind = e[f'ResidualBlock_{i}'], _norm_name(block.norm0)
    pairs.append((block.conv0.weight, q['Conv_0']['kernel']))
    norm(block.norm0, q[f'{kind}_0'])
    pairs.append((block.conv1.weight, q['Conv_1']['kernel']))
    norm(block.norm1, q[f'{kind}_1'])
    if block.proj is not None:
      pairs.append((block.proj.weight, q['Conv_2']['kernel']))
  if hasattr(model, 'project'):
    mlp(model.project, params['project'])
  head = getattr(model, 'head', None)
  if isinstance(head, tss.SiameseHead):
    if head.mlp is not None:
      mlp(head.mlp, params['head']['MLP_0'])
  elif head is not None:
    mlp(head, params['head'])
  return pairs


def stat_pairs(model, batch_stats):
  """[(torch running-statistics buffer, flax array)] for every BatchNorm of the twin, from the
  flax 'batch_stats' collection (empty without BatchNorm)."""
  pairs = []

  def bn(mod, q):
    pairs.extend([(mod.running_mean, q['mean']), (mod.running_var, q['var'])])

  def mlp(mod, *path):
    if not mod.norms:
      return
    q = batch_stats
    for k in path:
      q = q[k]
    for i, n in enumerate(mod.norms):
      bn(n, q[f'BatchNorm_{i}'])

  enc = model.encoder
  if _norm_name(enc.stem_norm) == 'BatchNorm':
    e = batch_stats['encoder']
    bn(enc.stem_norm, e['BatchNorm_0'])
    for i, block in enumerate(enc.blocks):
      bn(block.norm0, e[f'ResidualBlock_{i}']['BatchNorm_0'])
      bn(block.norm1, e[f'ResidualBlock_{i}']['BatchNorm_1'])
  if hasattr(model, 'project'):
    mlp(model.project, 'project')
  head = getattr(model, 'head', None)
  if isinstance(head, tss.SiameseHead):
    if head.mlp is not None:
      mlp(head.mlp, 'head', 'MLP_0')
  elif head is not None:
    mlp(head, 'head')
  return pairs


def load_flax_params(model, params, batch_stats=None):
  """Copies the JAX model's parameters into the twin, and its BatchNorm running statistics.

  `params`: the flax 'params' collection, or the variables {'params', 'batch_stats'} (then
  `batch_stats` comes from them)."""
  if 'params' in params:
    params, batch_stats = params['params'], params.get('batch_stats', batch_stats)
  pairs = named_pairs(model, params) + (stat_pairs(model, batch_stats) if batch_stats else [])
  with torch.no_grad():
    for t, a in pairs:
      t.copy_(torch.from_numpy(np.ascontiguousarray(torch_layout(a))))
