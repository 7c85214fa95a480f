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
