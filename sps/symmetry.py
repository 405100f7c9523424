"""Group actions on the latent space, as affine maps z -> A z + b with orthogonal A.

A spec like "T:0,2 R:0,2" names the groups and the latent dims each acts on:
  T:i,j,...   translation T(n) of the n listed dims,
  R:i,j,...   rotation SO(n) of the n listed dims,
and "|" between dim lists makes one shared group element act on several slices, e.g. the
two-body spec "T:0,1,2|3,4,5 R:0,1,2|3,4,5" moves and turns both bodies together.
An element is sampled for one example and vmapped over the batch.
"""
import dataclasses
from typing import Tuple

import jax
import jax.numpy as jnp

MODES = ('sample', 'compose', 'each')


@dataclasses.dataclass(frozen=True)
class Group:
  kind: str                               # 'T' or 'R'
  slices: Tuple[Tuple[int, ...], ...]     # equal-size dim lists sharing one element

  @property
  def n(self):
    return len(self.slices[0])

  def __str__(self):
    return f'{self.kind}:' + '|'.join(','.join(map(str, s)) for s in self.slices)


def parse(spec, z_dim):
  """Parses a spec string into Groups, with a one-line error naming what is wrong."""
  groups = []
  for token in spec.split():
    kind, _, dims = token.partition(':')
    where = f'symmetry group {token!r}'
    if kind not in ('T', 'R') or not dims:
      raise ValueError(f'{where}: write T:<dims> or R:<dims>, e.g. "T:0,2 R:0,2"')
    try:
      slices = tuple(tuple(int(d) for d in s.split(',')) for s in dims.split('|'))
    except ValueError:
      raise ValueError(f'{where}: dims must be comma-separated integers') from None
    flat = [d for s in slices for d in s]
    if len({len(s) for s in slices}) != 1:
      raise ValueError(f'{where}: every "|"-separated slice must have the same number of dims')
    if min(flat) < 0 or max(flat) >= z_dim:
      raise ValueError(f'{where}: dims must lie in 0..{z_dim - 1} (z has {z_dim} dims)')
    if len(set(flat)) != len(flat):
      raise ValueError(f'{where}: a dim appears twice')
    groups.append(Group(kind, slices))
  return tuple(groups)


def random_rotation(key, n):
  """A Haar-random element of SO(n): Q of a QR with signs fixed so that det(Q) = +1.

  Plain Householder QR makes Q's distribution depend on the decomposition's sign
  convention (in 2-D it is always a reflection); multiplying by sign(diag(R)) gives the
  Haar measure on O(n), and flipping one column when det < 0 lands in SO(n).
  """
  q, r = jnp.linalg.qr(jax.random.normal(key, (n, n)))
  q = q * jnp.sign(jnp.diag(r))[None, :]
  flip = jnp.where(jnp.linalg.det(q) < 0, -1.0, 1.0)
  return q.at[:, 0].multiply(flip)


def random_translation(key, n, dist='normal', scale=1.0):
  if dist == 'normal':
    return scale * jax.random.normal(key, (n,))
  return scale * jax.random.uniform(key, (n,), minval=-1.0, maxval=1.0)


def identity(z_dim):
  return jnp.eye(z_dim), jnp.zeros((z_dim,))


def sample_element(key, group, z_dim, trans_dist='normal', trans_scale=1.0):
  """One element of `group` as (A, b) acting on the whole z (identity off its dims)."""
  a, b = identity(z_dim)
  if group.kind == 'R':
    rot = random_rotation(key, group.n)
    for s in group.slices:
      idx = jnp.asarray(s)
      a = a.at[idx[:, None], idx[None, :]].set(rot)
  else:
    t = random_translation(key, group.n, trans_dist, trans_scale)
    for s in group.slices:
      b = b.at[jnp.asarray(s)].set(t)
  return a, b


def compose(g2, g1):
  """g2 after g1: z -> A2 (A1 z + b1) + b2."""
  (a2, b2), (a1, b1) = g2, g1
  return a2 @ a1, a2 @ b1 + b2


def sample_transform(key, groups, z_dim, mode='sample', p_identity=0.0,
                     trans_dist='normal', trans_scale=1.0):
  """One transform for one example: a random group ('sample') or all in turn ('compose').

  With probability p_identity the example gets the identity instead.
  """
  k_pick, k_id, *k_groups = jax.random.split(key, 2 + len(groups))
  elems = [sample_element(k, g, z_dim, trans_dist, trans_scale) for k, g in zip(k_groups, groups)]
  if mode == 'compose':
    out = identity(z_dim)
    for e in elems:
      out = compose(e, out)
  elif mode == 'sample':
    i = jax.random.randint(k_pick, (), 0, len(groups))
    out = jax.tree.map(lambda *xs: jnp.stack(xs)[i], *elems)
  else:
    raise ValueError(f'mode {mode!r}: sample_transform takes "sample" or "compose"')
  keep = jax.random.bernoulli(k_id, 1.0 - p_identity)
  return jax.tree.map(lambda x, i: jnp.where(keep, x, i), out, identity(z_dim))


def act(g, z):
  """g . z for z of shape (..., z_dim)."""
  a, b = g
  return z @ a.T + b


def act_inverse(g, z):
  """g^-1 . z = A^T (z - b), A being orthogonal."""
  a, b = g
  return (z - b) @ a
