"""exp and row max that numba's loop vectorizer can widen, shared by the generated elementwise kernels
and the softmax rows of the norm and attention kernels.

- ``vexp``: numba calls libm's scalar ``expf`` once per element, which keeps every loop around it scalar.
  ``vexp`` of a float32 is spelled out of arithmetic, floor, selects and bit casts instead (Cephes' range
  reduction and polynomial: x = n*ln2 + r, e**r by a polynomial, 2**n built from exponent bits as two
  halves so that results near overflow and in the subnormal range stay exact; inf/0 beyond the range,
  NaN kept). It is inlined into its caller (numba IR), so the caller's loop vectorizes. float64 keeps
  libm's exp.
- ``vmax``: the max of a contiguous row as an integer max reduction over the floats' bits, which widens
  where a float max reduction stays scalar.
"""
import math

import numpy as np
from numba import njit, types
from numba.extending import overload

_F = np.float32
_LO, _HI = _F(-103.9), _F(88.72283)
_LOG2E, _LN2_HI, _LN2_LO = _F(1.4426950408889634), _F(0.693359375), _F(2.12194440e-4)
_P0, _P1, _P2, _P3, _P4, _P5 = (_F(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                                 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
_ZERO, _HALF, _ONE, _INF = _F(0), _F(0.5), _F(1), _F(np.inf)


def vexp(x):
    """e**x of a float scalar (numba only; see the module docstring)."""
    raise NotImplementedError("vexp is called from numba kernels only")


@njit(inline="always")
def _pow2(h):
    """2**h for an integral float32 h in [-126, 127]."""
    return np.int32((np.int32(h) + np.int32(127)) << np.int32(23)).view(np.float32)


def _exp32(x):
    c = min(max(x, _LO), _HI)
    n = np.floor(c * _LOG2E + _HALF)
    r = c - n * _LN2_HI + n * _LN2_LO
    p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    h = np.floor(n * _HALF)
    y = (p * r * r + r + _ONE) * _pow2(h) * _pow2(n - h)
    return x if x != x else (_INF if x > _HI else (y if x >= _LO else _ZERO))


@overload(vexp, inline="always")
def _vexp(x):
    if x == types.float32:
        return _exp32
    if isinstance(x, types.Float):
        return lambda x: math.exp(x)
    return None


def vmax(row):
    """The largest element of a contiguous float row (numba only; a NaN with its sign bit clear wins)."""
    raise NotImplementedError("vmax is called from numba kernels only")


@overload(vmax, inline="always")
def _vmax(row):
    """Floats compared as integers: a float's bits, with every bit but the sign flipped on negative ones,
    order as signed integers the way the floats do. An integer max reduction vectorizes; a float one
    does not (LLVM widens it only under a function-wide no-NaN flag numba does not set)."""
    if not isinstance(row, types.Array) or row.dtype not in (types.float32, types.float64):
        return None
    wide = row.dtype == types.float64
    it, ft = (np.int64, np.float64) if wide else (np.int32, np.float32)
    low, magnitude, sign = it(np.iinfo(it).min), it(np.iinfo(it).max), it(63 if wide else 31)

    def impl(row):
        bits = row.view(it)
        top = low
        for i in range(bits.shape[0]):
            b = bits[i]
            top = max(top, b ^ ((b >> sign) & magnitude))
        return it(top ^ ((top >> sign) & magnitude)).view(ft)
    return impl
