"""The per-layer conv benchmark times the same gradients on every path and in PyTorch."""
import numpy as np
import pytest

from benchmarks import conv as bench
from common import loop

# (project, name, transposed, cin, cout, size, kernel, stride, padding, batch): small twins of
# the benchmark's layer kinds
LAYERS = [('t', 'k4 s2', False, 3, 5, 8, 4, 2, 1, 2), ('t', 'T k4 s2', True, 5, 3, 4, 4, 2, 1, 2),
          ('t', '3x3', False, 4, 6, 6, 3, 1, 1, 2), ('t', '1x1', False, 4, 3, 5, 1, 1, 0, 2)]


# the in-scan rows: stride-1 layers with cout >= cin
CASES = [(layer, 0) for layer in LAYERS] + [(LAYERS[2], 2)]


@pytest.mark.parametrize('layer,scan', CASES)
def test_every_path_and_torch_give_the_same_gradients(layer, scan):
  torch = pytest.importorskip('torch')
  torch.set_num_threads(1)
  arrays = bench.layer_arrays(layer)
  dx_t, dw_t = (t.detach().numpy() for t in bench.layer_torch(layer, arrays, scan)())
  dw_t = dw_t.transpose((2, 3, 0, 1) if layer[2] else (2, 3, 1, 0))
  options = loop.compiler_options({'xla_cpu_ynn_fusion_types': 'reduce'})   # as the CLI compiles
  for impl in ('auto', 'matmul', 'hybrid', 'lax'):
    dx, dw = bench.layer_jax(layer, impl, arrays, scan, options if impl == 'auto' else None)()
    np.testing.assert_allclose(dx, dx_t.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, dw_t, rtol=1e-4, atol=1e-4)
