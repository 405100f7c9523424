"""One data-parallel mesh: the batch is split over the 'data' axis, parameters are replicated.

The same code runs on 1 CPU, 8 fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=8), a GPU or a TPU slice.
"""
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA = 'data'


def make_mesh(devices=None):
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA,))


def batch_sharding(mesh):
  return NamedSharding(mesh, P(DATA))


def replicated(mesh):
  return NamedSharding(mesh, P())


def shard_batch(batch, mesh):
  """Puts a host batch on the mesh, split along its leading axis."""
  return jax.device_put(batch, batch_sharding(mesh))


def replicate(tree, mesh):
  return jax.device_put(tree, replicated(mesh))
