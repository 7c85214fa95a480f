"""``_small_mm.rows_nt``: products with a few rows as dot products (batch-1 inference, streaming,
sampling). Oracle: NumPy's matrix product in float64."""

import numpy as np
import pytest

numba = pytest.importorskip("numba")
from grukit.backends._small_mm import rows_nt  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("M", [1, 2, 4])
@pytest.mark.parametrize("P, K", [(1, 1), (7, 5), (96, 64), (9, 1024)])  # K = 1024 float32: rows 4 KiB apart
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_rows_nt_against_numpy(dtype, M, P, K, beta):
    rng = np.random.default_rng(P * K + M)
    A = rng.standard_normal((M, K)).astype(dtype)
    B = rng.standard_normal((P, K)).astype(dtype)
    C0 = rng.standard_normal((M, P)).astype(dtype)
    C = C0.copy()
    rows_nt(A, B, C, beta)
    ref = A.astype(np.float64) @ B.astype(np.float64).T + beta * C0.astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(C, ref, rtol=tol, atol=tol * np.sqrt(K))


def test_rows_nt_into_column_slices_and_from_row_slices():
    """The stream's use: a block's rows of the weights into a block's columns of the gates."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2, 16))
    W = rng.standard_normal((30, 16))
    G = np.full((2, 30), 7.0)
    rows_nt(A, W[11:21], G[:, 11:21], 0.0)
    np.testing.assert_allclose(G[:, 11:21], A @ W[11:21].T, rtol=1e-12, atol=1e-12)
    assert (G[:, :11] == 7.0).all() and (G[:, 21:] == 7.0).all()  # nothing outside the slice


def test_rows_nt_keeps_nan_and_infinity():
    A = np.array([[1.0, np.nan, 2.0], [1.0, 1.0, 1.0]])
    B = np.array([[1.0, 1.0, 1.0], [np.inf, 0.5, 0.0], [1.0, 2.0, 3.0]])
    C = np.zeros((2, 3))
    rows_nt(A, B, C, 0.0)
    assert np.isnan(C[0]).all()
    assert C[1, 1] == np.inf and C[1, 0] == 3.0 and C[1, 2] == 6.0


def _packed():
    from grukit.backends import _blas

    if not _blas.has_packed_gemm():
        pytest.skip("PyTorch's library exports no MKL packed GEMM (cblas_sgemm_pack): a build without MKL")
    from grukit.backends import _cpu_kernels

    return _cpu_kernels


@pytest.mark.parametrize("M", [1, 3, 8, 33])
@pytest.mark.parametrize("P, K", [(1, 1), (96, 64), (30, 7), (384, 128)])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_packed_products_against_numpy(M, P, K, beta):
    """MKL's packed float32 GEMM as the kernels call it: ``B`` packed once for ``M`` rows, then
    used again and again, from row slices of ``A`` into column slices of ``C`` (a feature
    block's gates), with nothing outside the slice touched."""
    k = _packed()
    rng = np.random.default_rng(M * P + K)
    A = rng.standard_normal((M + 2, K + 3)).astype(np.float32)
    W = rng.standard_normal((P + 5, K)).astype(np.float32)
    C0 = rng.standard_normal((M + 2, P + 4)).astype(np.float32)
    a, w = A[1 : M + 1, :K], W[2 : P + 2]
    packed = k.pack_nt(w, M)
    ref = a.astype(np.float64) @ w.astype(np.float64).T + beta * C0[1 : M + 1, 3 : P + 3].astype(np.float64)
    for _ in range(2):  # the packed copy is read, never consumed
        C = C0.copy()
        k.mm_packed(a, packed, P, C[1 : M + 1, 3 : P + 3], beta)
        np.testing.assert_allclose(C[1 : M + 1, 3 : P + 3], ref, rtol=2e-5, atol=2e-5 * np.sqrt(K))
        outside = np.ones(C.shape, bool)
        outside[1 : M + 1, 3 : P + 3] = False
        assert (C[outside] == C0[outside]).all()
