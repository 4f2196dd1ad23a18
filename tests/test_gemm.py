import numpy as np
import pytest

from backprop.nn.gemm import gemm


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_gemm_accumulates_in_place(dtype, transpose_a, transpose_b):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 3)).astype(dtype)
    B = rng.standard_normal((3, 4)).astype(dtype)
    A_arg = np.ascontiguousarray(A.T).T if transpose_a else A  # F-ordered view of the same values
    B_arg = np.ascontiguousarray(B.T).T if transpose_b else B
    C = rng.standard_normal((5, 4)).astype(dtype)
    expected = -0.5 * A @ B + 2.0 * C
    out = gemm(C, A_arg, B_arg, -0.5, 2.0)
    assert out is C
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(C, expected, rtol=rtol)


def test_gemm_refuses_what_it_cannot_update_in_place():
    A, B = np.ones((4, 3), np.float32), np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match="could not write into C"):
        gemm(np.zeros((4, 4), np.float32)[:, :2], A, B)
    with pytest.raises(ValueError, match="C- or F-contiguous"):
        gemm(np.zeros((2, 2), np.float32), np.ones((4, 6), np.float32)[::2, ::2], B[:, :2][:2])
