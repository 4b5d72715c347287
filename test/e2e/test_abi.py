"""The model ABI as the runtime sees it: produced buffers and failures."""
import numpy as np
import pytest

MATMUL = """
func.func @forward(%x: tensor<?x64xf32> {moe.name = "x"},
                   %w: tensor<64x48xf32> {moe.name = "w", moe.role = "parameter"})
    -> (tensor<?x48xf32> {moe.name = "y"}) {
  %y = nn.linear %x, %w : tensor<?x64xf32>, tensor<64x48xf32>
  %r = nn.relu %y : tensor<?x48xf32>
  return %r : tensor<?x48xf32>
}
"""


def test_out_of_memory_is_a_status_not_a_crash(compile_model):
    """When the runtime's alloc returns NULL the model reports
    MOE_ABI_OUT_OF_MEMORY (1) and stays usable."""
    model = compile_model(MATMUL)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 64), dtype=np.float32)
    w = rng.standard_normal((64, 48), dtype=np.float32)
    model.alloc_limit = 1024
    with pytest.raises(RuntimeError, match="invoke returned 1"):
        model.run(x=x, w=w)
    model.alloc_limit = None
    y = model.run(x=x, w=w)["y"]
    np.testing.assert_allclose(y, np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)


def test_results_are_owned_and_released(compile_model):
    """Every buffer the model allocates is released or handed over: none is
    left behind after a run."""
    model = compile_model(MATMUL)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 64), dtype=np.float32)
    w = rng.standard_normal((64, 48), dtype=np.float32)
    model.run(x=x, w=w)
    assert model.allocations > 0
    assert not model._live
