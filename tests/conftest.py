"""Test-session setup: one persistent XLA compilation cache shared by this process and subprocesses.

The end-to-end tests start several training processes on the same smoke config; with the
cache, each compiles the train step once instead of once per process.
"""
import os
import tempfile

import jax

_CACHE = os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                               os.path.join(tempfile.gettempdir(), 'jax_test_compilation_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
