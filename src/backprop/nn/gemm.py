"""General matrix multiply-accumulate, ``C <- alpha A @ B + beta C``, in place.

NumPy's ``matmul`` can only overwrite its output.  BLAS ``gemm`` also
accumulates into it, which lets a layer add its bias and lets plain SGD update
``W <- W - lr * A.T @ delta`` in the matrix product itself, with no gradient
array and no extra pass over the weights.  SciPy exposes the BLAS routine.

Every matrix product of the network goes through here, so only one BLAS
thread pool is ever busy: two pools (NumPy's and SciPy's) alternating on the
same cores make each other's spinning threads wait.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas

_GEMM = {np.dtype("float32"): blas.sgemm, np.dtype("float64"): blas.dgemm}


def _fortran_view(M: np.ndarray) -> tuple[np.ndarray, int]:
    """``M.T`` as a Fortran-ordered operand: (array, transpose flag) with op(array) == M.T."""
    if M.flags.c_contiguous:
        return M.T, 0
    if M.flags.f_contiguous:  # M is the transpose of a C-ordered array
        return M, 1
    raise ValueError(f"gemm needs C- or F-contiguous operands; got strides {M.strides}")


def gemm(C: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: float = 1.0, beta: float = 0.0):
    """``C <- alpha A @ B + beta C`` for C of shape (m, n), A (m, k), B (k, n).

    C must be C-contiguous; A and B may be C-contiguous or transposed views of
    C-contiguous arrays (``X.T``), which cost no copy.  All share C's dtype.
    """
    # BLAS is column-major: a C-ordered C is a column-major C.T, and
    # C.T = alpha B.T @ A.T + beta C.T.
    b, trans_b = _fortran_view(B)
    a, trans_a = _fortran_view(A)
    c = C.T
    result = _GEMM[C.dtype](
        alpha, b, a, beta=beta, c=c, trans_a=trans_b, trans_b=trans_a, overwrite_c=1
    )
    if result is not c:  # SciPy copied C (wrong order or dtype) and left it unchanged
        raise ValueError(f"gemm could not write into C of {C.dtype} with strides {C.strides}")
    return C
