"""Multi-host start: `jax.distributed.initialize` when the environment asks for it.

One process per host runs the same command; together they see every device, and the mesh,
the train step and the checkpoints span them all. Every process builds the same global batch
from the step number (the data are pure functions of the step) and places its own devices'
slices; process 0 alone writes config.json, metrics and pictures.

The environment asks for it in one of two ways:
  * JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES=N and JAX_PROCESS_ID=i, set by you
    (any cluster, or several processes on one machine);
  * JAX_DISTRIBUTED=auto, or a SLURM / Open MPI job with more than one task: jax reads the
    cluster's own variables (Cloud TPU pods, SLURM, Open MPI, Kubernetes).
Without either, nothing happens: one process, its local devices.
"""
import os

REQUIRED = ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID')


def request(env):
  """The keyword arguments for `jax.distributed.initialize`, or None for a single process."""
  if any(env.get(k) for k in REQUIRED):
    missing = [k for k in REQUIRED if not env.get(k)]
    if missing:
      raise ValueError(f'multi-host start needs {", ".join(REQUIRED)}; missing {", ".join(missing)}')
    return dict(coordinator_address=env['JAX_COORDINATOR_ADDRESS'],
                num_processes=int(env['JAX_NUM_PROCESSES']),
                process_id=int(env['JAX_PROCESS_ID']))
  tasks = max(int(env.get('SLURM_NTASKS', '1') or 1), int(env.get('OMPI_COMM_WORLD_SIZE', '1') or 1))
  if env.get('JAX_DISTRIBUTED') == 'auto' or tasks > 1:
    return {}
  return None


def initialize(env=None):
  """Starts the multi-host runtime if `env` (default: os.environ) asks for it; True if it did.

  Must run before anything touches jax's devices. CPU processes talk over gloo.
  """
  kwargs = request(os.environ if env is None else env)
  if kwargs is None:
    return False
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**kwargs)
  return True


def is_chief():
  """Whether this process writes the run's files (process 0; always true on one host)."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index() == 0
