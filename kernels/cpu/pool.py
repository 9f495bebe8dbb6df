"""Pool kernels: window max/average pooling over [N*C, H, W] and global pooling over [N*C, spatial].

A 1-D pool runs as the 2-D kernel on a height-1 image. The window kernel builds an output row tap by
tap: each window tap inside the input adds a contiguous run of input columns (strided columns are first
split into phases) to the run of output columns it covers, which is worked out once; so the inner loops
are plain contiguous loops that vectorize, without bounds checks. Rows of N*C run in parallel.

Operands other than float32/float64 run in float32 (float16) or float64 (integers) and are converted
back, so each kernel has one compiled signature per float type.
"""
import numpy as np
from numba import njit, prange

from ...backend.registry import Kernel, lowers
from ...errors import IrcError
from ...ops.pool import height_one_attrs, pool_geometry


def float_operand(x: np.ndarray) -> np.ndarray:
    """x as a C-contiguous float32 or float64 array (float16 widens to float32, integers to float64)."""
    if x.dtype == np.float16:
        return np.ascontiguousarray(x, dtype=np.float32)
    if x.dtype.kind != "f":
        return np.ascontiguousarray(x, dtype=np.float64)
    return np.ascontiguousarray(x)


# float reassociation lets the row loops vectorize; inf and NaN keep their meaning (no nnan/ninf)
FAST = {"nsz", "arcp", "contract", "reassoc"}


@njit(cache=True, inline="always")
def _tap_range(start, k, d, size, pad_end):
    """Of taps start + i*d (i < k): the first and last+1 inside [0, size), and the count inside the
    padded input [.., size + pad_end)."""
    lo = 0 if start >= 0 else (-start + d - 1) // d
    hi = min(k, (size - 1 - start) // d + 1) if start < size else 0
    padded = min(k, (size + pad_end - 1 - start) // d + 1)
    return lo, max(hi, lo), padded


@njit(cache=True, inline="always")
def _max_into(acc, src):
    """acc = max(acc, src) elementwise (contiguous, same length); a NaN wins."""
    for o in range(acc.shape[0]):
        v, a = src[o], acc[o]
        acc[o] = v if (v > a or v != v) else a


@njit(cache=True, inline="always")
def _add_into(acc, src):
    """acc += src elementwise (contiguous, same length)."""
    for o in range(acc.shape[0]):
        acc[o] += src[o]


@njit(cache=True)
def _column_phases(plane, stride):
    """plane [H, W] as ``stride`` planes of every stride-th column: out[p, h, m] = plane[h, m * stride + p].

    With them, the input columns that one window tap reads for a run of output columns are contiguous."""
    h, w = plane.shape
    if stride == 1:
        return plane.reshape((1, h, w))
    wp = (w + stride - 1) // stride
    out = np.zeros((stride, h, wp), plane.dtype)
    for p in range(stride):
        for hh in range(h):
            for m in range((w - p + stride - 1) // stride):
                out[p, hh, m] = plane[hh, m * stride + p]
    return out


@njit(parallel=True, cache=True, fastmath=FAST)
def _pool2d(x, y, geom, is_max, count_include_pad):
    """y[r, oh, ow] = max or mean of x[r] over the window at (oh, ow); geom = (kh, kw, sh, sw, dh, dw,
    pad_top, pad_left, pad_bottom, pad_right).

    An output row accumulates tap by tap: window tap (i, j), where inside the input, adds one
    contiguous run of input columns (from the column phases of the plane) to the run of output columns
    whose tap j falls inside, which is worked out once per j."""
    kh, kw, sh, sw, dh, dw, pt, pl, pb, pr = geom
    rows, h, w = x.shape
    _, oh_n, ow_n = y.shape
    first, end = np.empty(kw, np.int64), np.empty(kw, np.int64)   # output columns where tap j is inside
    phase, shift = np.empty(kw, np.int64), np.empty(kw, np.int64)  # input column o*sw + off = (o+shift)*sw + phase
    for j in range(kw):
        off = j * dw - pl
        first[j] = 0 if off >= 0 else min(ow_n, (-off + sw - 1) // sw)
        end[j] = max(first[j], min(ow_n, (w - 1 - off) // sw + 1)) if off <= w - 1 else first[j]
        phase[j], shift[j] = off % sw, off // sw
    wcount = np.empty(ow_n, np.int64)                               # taps per column that count
    for ow in range(ow_n):
        lo, hi, padded = _tap_range(ow * sw - pl, kw, dw, w, pr)
        wcount[ow] = padded if count_include_pad else hi - lo
    for r in prange(rows):
        planes = _column_phases(x[r], sw)
        acc = np.empty(ow_n, x.dtype)
        for oh in range(oh_n):
            hs = oh * sh - pt
            ilo, ihi, hcount = _tap_range(hs, kh, dh, h, pb)
            acc[:] = -np.inf if is_max else 0.0
            for i in range(ilo, ihi):
                for j in range(kw):
                    lo, hi = first[j], end[j]
                    src = planes[phase[j], hs + i * dh, lo + shift[j]:hi + shift[j]]
                    if is_max:
                        _max_into(acc[lo:hi], src)
                    else:
                        _add_into(acc[lo:hi], src)
            if is_max:
                y[r, oh] = acc
            else:
                hn = hcount if count_include_pad else ihi - ilo
                for ow in range(ow_n):
                    y[r, oh, ow] = acc[ow] / max(hn * wcount[ow], 1)


@lowers("maxpool", "avgpool", family="pool")
def lower_pool(node):
    """Window pooling of a rank-4 (2-D) operand, or of a rank-3 (1-D) one as a height-1 image."""
    t = node.inputs[0].type
    if not t.is_static or t.rank not in (3, 4):
        raise IrcError(f"{node.op} supports 1-D and 2-D pooling of static shapes, got input {t}")
    n, c, *spatial = t.shape
    if t.rank == 3:
        spatial, attrs = [1] + spatial, height_one_attrs(node.attrs)
    else:
        attrs = node.attrs
    g = pool_geometry(spatial, attrs)
    geom = g.kernel + g.strides + g.dilations + g.pads
    out_shape, dtype = node.outputs[0].type.shape, node.outputs[0].type.numpy_dtype
    is_max, cip = node.op == "maxpool", int(node.attrs.get("count_include_pad", 0))

    def run(x):
        xf = float_operand(x).reshape([n * c] + spatial)
        y = np.empty((n * c,) + g.out, xf.dtype)
        _pool2d(xf, y, geom, is_max, cip)
        return y.reshape(out_shape).astype(dtype, copy=False)
    return Kernel(run, algo="direct")


@njit(parallel=True, cache=True, fastmath=FAST)
def _global_pool(x, y, is_max):
    """y[r] = max or mean of the row x[r, :]."""
    rows, n = x.shape
    for r in prange(rows):
        if is_max:
            acc = -np.inf
            for i in range(n):
                v = x[r, i]
                if v > acc or v != v:
                    acc = v
            y[r] = acc
        else:
            acc = 0.0
            for i in range(n):
                acc += x[r, i]
            y[r] = acc / n


@lowers("global_avgpool", "global_maxpool", family="pool")
def lower_global_pool(node):
    """Max or mean over all spatial dims, one row per (sample, channel)."""
    out_shape, dtype = node.outputs[0].type.shape, node.outputs[0].type.numpy_dtype
    is_max = node.op == "global_maxpool"

    def run(x):
        xf = float_operand(x)
        rows = x.shape[0] * x.shape[1]
        y = np.empty(rows, xf.dtype)
        _global_pool(xf.reshape(rows, -1), y, is_max)
        return y.reshape(out_shape).astype(dtype, copy=False)
    return Kernel(run)
