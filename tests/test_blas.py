"""The in-numba BLAS GEMM (kernels/cpu/blas.py), its parallel splits (kernels/cpu/gemm.py) and the
single-threaded-BLAS policy of runs."""
import threading

import numpy as np
import pytest

from irc.kernels.cpu import blas
from irc.kernels.cpu.gemm import gemm_batched, gemm_parallel

# small ones run on the calling thread; (40, 70, 300) splits columns and (300, 50, 40) rows across the pool
SHAPES = [(1, 1, 1), (7, 5, 9), (3, 64, 200), (130, 17, 2), (64, 1, 33), (40, 70, 300), (300, 50, 40)]


def _operands(m, k, n, dtype, layout, rng):
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    if layout == "transposed":  # views with a unit stride along rows, read in place
        a, b = np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T
    elif layout == "strided":  # views into wider arrays
        a = np.pad(a, ((0, 0), (2, 3)))[:, 2:2 + k]
        b = np.pad(b, ((0, 0), (1, 0)))[:, 1:]
    return a, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_gemm_matches_numpy(m, k, n, dtype, layout):
    rng = np.random.default_rng(m * 100 + n)
    a, b = _operands(m, k, n, dtype, layout, rng)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for fn in (blas.gemm, blas.gemm_loops):
        c = c0.copy()
        fn(a, b, c, 0.5)
        np.testing.assert_allclose(c, a.astype(np.float64) @ b + 0.5 * c0, rtol=tol, atol=tol * k)
    wide = np.zeros((m, n + 7), dtype)  # a result view inside a wider array: the columns around stay 0
    gemm_parallel(a, b, wide[:, 3:3 + n], 0.0, 2)
    np.testing.assert_allclose(wide[:, 3:3 + n], a.astype(np.float64) @ b, rtol=tol, atol=tol * k)
    assert not wide[:, :3].any() and not wide[:, 3 + n:].any()


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_gemm_batched_broadcasts_a_stride_zero_batch(batch):
    rng = np.random.default_rng(batch)
    a = rng.standard_normal((batch, 60, 40)).astype(np.float32)  # big enough to use the pool
    b = np.broadcast_to(rng.standard_normal((1, 40, 70)).astype(np.float32), (batch, 40, 70))
    c = np.empty((batch, 60, 70), np.float32)
    gemm_batched(a, b, c, 2)
    np.testing.assert_allclose(c, np.matmul(a, b), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not blas.AVAILABLE, reason="no CBLAS library loaded by numpy")
def test_blas_is_single_threaded_inside_and_restored_after():
    get = blas.blas_threads
    before = get()
    barrier, seen = threading.Barrier(2), []

    def worker():
        with blas.single_threaded_blas():
            barrier.wait()
            seen.append(get())
            barrier.wait()
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [1, 1] and get() == before
