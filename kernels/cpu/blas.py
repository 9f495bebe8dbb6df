"""BLAS GEMM called from inside numba kernels, so that numba's thread pool is the only one irc runs.

irc's kernels split their work across numba's pool (``prange``) and each worker calls a single-threaded
BLAS GEMM on its own block, then applies the fused epilogue to that block while it is still in cache. BLAS's
own pool stays idle (``single_threaded_blas``), so the two pools never take turns on the same cores.

The GEMM is the CBLAS ``?gemm`` of the BLAS library numpy loaded (OpenBLAS in numpy's wheels), found by
scanning the process's loaded libraries, registered with LLVM under a fixed name and declared to numba as
an external function: compiled kernels refer to it by name, so they stay cacheable on disk. Where no CBLAS is
found, ``gemm`` falls back to a numba loop (correct, much slower).
"""
from __future__ import annotations

import ctypes
import threading

import llvmlite.binding as llvm
from numba import njit, types
from numba.extending import overload

# (symbol prefix, symbol suffix, 64-bit integers) of the CBLAS builds numpy ships or links
_FLAVOURS = (("scipy_cblas_", "64_", True), ("cblas_", "64_", True), ("scipy_cblas_", "", False),
             ("cblas_", "", False))
_THREAD_SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                   "openblas_set_num_threads")
_THREAD_GETTERS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                   "openblas_get_num_threads")
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def _loaded_libraries():
    """Paths of the shared libraries mapped into this process that may hold a BLAS, numpy's first."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if ".so" in line}
    except OSError:
        paths = set()
    blas = [p for p in paths if any(k in p.lower() for k in ("blas", "mkl", "flexiblas"))]
    return sorted(blas, key=lambda p: "numpy" not in p)


def _find():
    """(library, prefix, suffix, ilp64) of the first loaded library exporting CBLAS ?gemm and ?gemv."""
    for path in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, ilp64 in _FLAVOURS:
            if all(hasattr(lib, f"{prefix}{t}{f}{suffix}") for t in "sd" for f in ("gemm", "gemv")):
                return lib, prefix, suffix, ilp64
    return None


_found = _find()
AVAILABLE = _found is not None
_int = types.int64 if (_found is None or _found[3]) else types.int32


def _declare(routine, t, scalar, ints_before, tail):
    """The external function irc_cblas_<t><routine>: its arguments are ``ints_before`` 32-bit enums (order,
    transposes), then ``tail``, a string of B (BLAS integer), S (scalar) and P (pointer) read in order."""
    name = f"irc_cblas_{t}{routine}"
    if AVAILABLE:
        lib, prefix, suffix, _ = _found
        llvm.add_symbol(name, ctypes.cast(getattr(lib, f"{prefix}{t}{routine}{suffix}"), ctypes.c_void_p).value)
    kinds = {"B": _int, "S": scalar, "P": types.CPointer(scalar)}
    return types.ExternalFunction(name, types.void(*[types.int32] * ints_before, *[kinds[k] for k in tail]))


# ?gemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
_FLOATS = (("s", types.float32), ("d", types.float64))
_sgemm, _dgemm = (_declare("gemm", t, scalar, 3, "BBBSPBPBSPB") for t, scalar in _FLOATS)
# ?gemv(order, trans, M, N, alpha, A, lda, X, incX, beta, Y, incY)
_sgemv, _dgemv = (_declare("gemv", t, scalar, 2, "BBSPBPBSPB") for t, scalar in _FLOATS)


def _xgemm(*args):
    """Typing stub: the CBLAS call for the operands' dtype (see the overload below)."""
    raise NotImplementedError


@overload(_xgemm)
def _xgemm_impl(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    fn = {types.float32: _sgemm, types.float64: _dgemm}.get(c.dtype)
    if fn is None:
        return None

    def impl(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        fn(ROW_MAJOR, ta, tb, m, n, k, alpha, a.ctypes, lda, b.ctypes, ldb, beta, c.ctypes, ldc)
    return impl


def _xgemv(*args):
    """Typing stub: the CBLAS matrix-vector call for the operands' dtype (see the overload below)."""
    raise NotImplementedError


@overload(_xgemv)
def _xgemv_impl(trans, m, n, alpha, a, lda, x, incx, beta, y):
    fn = {types.float32: _sgemv, types.float64: _dgemv}.get(y.dtype)
    if fn is None:
        return None

    def impl(trans, m, n, alpha, a, lda, x, incx, beta, y):
        fn(ROW_MAJOR, trans, m, n, alpha, a.ctypes, lda, x.ctypes, incx, beta, y.ctypes, 1)
    return impl


@njit(cache=True)
def _layout(x):
    """(transposed flag, leading dimension) of a 2-D view with one unit-stride axis; (0, -1) if none."""
    size = x.itemsize
    rows, cols = x.shape
    if x.strides[1] == size or cols == 1:
        return NO_TRANS, max(x.strides[0] // size, cols, 1)
    if x.strides[0] == size or rows == 1:
        return TRANS, max(x.strides[1] // size, rows, 1)
    return NO_TRANS, -1


@njit(cache=True)
def gemm_loops(a, b, c, beta, alpha=1.0):
    """c = alpha * a @ b + beta * c with numba loops: the fallback without a CBLAS (row by row, vectorized
    over c's columns)."""
    for i in range(c.shape[0]):
        row = c[i]
        for j in range(row.shape[0]):
            row[j] = beta * row[j] if beta != 0 else 0
        for p in range(a.shape[1]):
            s = alpha * a[i, p]
            for j in range(row.shape[0]):
                row[j] += s * b[p, j]


@njit(cache=True)
def gemm(a, b, c, beta, alpha=1.0):
    """c = alpha * a @ b + beta * c for 2-D float views of one dtype: a [M, K], b [K, N], c [M, N]; a and b
    each with a unit stride along one axis (a transposed view is read in place), c along its rows. Single-threaded:
    call it from a worker of numba's pool on that worker's block."""
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0:
        return
    ta, lda = _layout(a)
    tb, ldb = _layout(b)
    if not AVAILABLE or lda < 0 or ldb < 0 or (c.strides[1] != c.itemsize and n > 1) or k == 0:
        gemm_loops(a, b, c, beta, alpha)
        return
    if m == 1 and a.strides[1] > 0 and c.strides[1] == c.itemsize:
        # one row: a matrix-vector product, which BLAS streams the matrix for (a GEMM of one row with a
        # transposed B ran 4x slower)
        rows, cols = (k, n) if tb == NO_TRANS else (n, k)
        _xgemv(TRANS if tb == NO_TRANS else NO_TRANS, rows, cols, c.dtype.type(alpha), b, ldb, a,
               a.strides[1] // a.itemsize, c.dtype.type(beta), c)
        return
    ldc = max(c.strides[0] // c.itemsize, n, 1)
    _xgemm(ta, tb, m, n, k, c.dtype.type(alpha), a, lda, b, ldb, c.dtype.type(beta), c, ldc)


def _threads_function(names):
    """The first of the CBLAS library's thread-count functions ``names`` it exports (int -> int), or None."""
    for name in names if AVAILABLE else ():
        fn = getattr(_found[0], name, None)
        if fn is not None:
            fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int] * (name in _THREAD_SETTERS)
            return fn
    return None


_get_threads = _threads_function(_THREAD_GETTERS)
_set_threads = _threads_function(_THREAD_SETTERS)


def blas_threads():
    """BLAS's own thread count (None when irc cannot ask its library)."""
    return None if _get_threads is None else _get_threads()


_lock = threading.Lock()
_active = 0
_saved = None


class single_threaded_blas:
    """Context: BLAS's own pool at one thread while irc kernels run (numba's pool parallelizes instead),
    the previous count restored when the last concurrent run leaves."""

    def __enter__(self):
        global _active, _saved
        with _lock:
            if _active == 0 and _set_threads is not None:
                _saved = blas_threads()
                if _saved != 1:
                    _set_threads(1)
            _active += 1
        return self

    def __exit__(self, *exc):
        global _active
        with _lock:
            _active -= 1
            if _active == 0 and _set_threads is not None and _saved not in (None, 1):
                _set_threads(_saved)
        return False


def library() -> str:
    """The CBLAS library the kernels call, for ``irc info`` and the benchmarks."""
    if not AVAILABLE:
        return "none (numba loops)"
    return getattr(_found[0], "_name", "?")
