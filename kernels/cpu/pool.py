"""Pool kernels: window max/average pooling over [N*C, H, W] and global pooling over [N*C, spatial].

A 1-D pool runs as the 2-D kernel on a height-1 image. The window kernel loads each plane into the
phase-split padded plane of depthwise.py (padding -inf for max, 0 for mean), where every window tap is one
contiguous loop over a run of outputs, borders included: the loops vectorize and hold no branch. A mean
multiplies the sum by a per-output table of 1 / count, worked out once per call. Planes of N*C run in
parallel, as do the rows of the global pools.

Operands other than float32/float64 run in float32 (float16) or float64 (integers) and are converted
back, so each kernel has one compiled signature per float type.
"""
import numba
import numpy as np
from numba import njit, prange

from ...backend.registry import Kernel, lowers
from ...errors import IrcError
from ...ops.pool import height_one_attrs, pool_geometry
from .depthwise import VECTOR, load_plane, plane_plan, store_segment


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


@njit(cache=True)
def _mean_scales(geom, h, w, oh, ow, wq, count_include_pad, like):
    """1 / (the taps an average divides by) per flat output q = yy*wq + p (of the plane's pitch wq) of
    oh output rows: those inside the input, or with count_include_pad those inside the padded input; of
    like's dtype."""
    kh, kw, sh, sw, dh, dw, pt, pl, pb, pr = geom
    cols = np.empty(ow, np.int64)
    for p in range(ow):
        lo, hi, padded = _tap_range(p * sw - pl, kw, dw, w, pr)
        cols[p] = padded if count_include_pad else hi - lo
    scales = np.ones(oh * wq + VECTOR, like.dtype)
    for yy in range(oh):
        lo, hi, padded = _tap_range(yy * sh - pt, kh, dh, h, pb)
        rows = padded if count_include_pad else hi - lo
        for p in range(ow):
            scales[yy * wq + p] = 1.0 / max(1, rows * cols[p])
    return scales


@njit(cache=True, inline="always")
def _max_taps(acc, plane, offsets, n):
    """acc[k] = the maximum over the taps t of plane[offsets[t] + k] (a NaN wins), for k < n rounded up to
    whole VECTOR-wide chunks (the buffers have that slack)."""
    n = (n + VECTOR - 1) // VECTOR * VECTOR
    first = plane[offsets[0]:]
    for k in range(n):
        acc[k] = first[k]
    for t in range(1, offsets.shape[0]):
        src = plane[offsets[t]:]
        for k in range(n):
            v, a = src[k], acc[k]
            acc[k] = v if (v > a or v != v) else a


@njit(cache=True, inline="always")
def _mean_taps(acc, plane, offsets, scales, n):
    """acc[k] = scales[k] * the sum over the taps t of plane[offsets[t] + k], for k < n rounded up to
    whole VECTOR-wide chunks."""
    n = (n + VECTOR - 1) // VECTOR * VECTOR
    first = plane[offsets[0]:]
    for k in range(n):
        acc[k] = first[k]
    for t in range(1, offsets.shape[0]):
        src = plane[offsets[t]:]
        for k in range(n):
            acc[k] += src[k]
    for k in range(n):
        acc[k] *= scales[k]


@njit(parallel=True, cache=True, fastmath=FAST)
def _pool2d(x, y, geom, is_max, count_include_pad, workers):
    """y[r, oh, ow] = max or mean of x[r] over the window at (oh, ow); geom = (kh, kw, sh, sw, dh, dw,
    pad_top, pad_left, pad_bottom, pad_right). In parallel over the planes r by up to ``workers``
    threads: each plane is loaded into its phase-split padded plane (depthwise.py), padded with -inf for
    max and 0 for mean, and every window tap is then one contiguous loop over a run of outputs."""
    kh, kw, sh, sw, dh, dw, pt, pl, pb, pr = geom
    n_planes, h, w = x.shape
    oh, ow = y.shape[1], y.shape[2]
    plan = plane_plan(h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl)
    size, wq, rows, offsets = plan[0], plan[1], plan[2], plan[6]
    scales = _mean_scales(geom, h, w, 0 if is_max else oh, ow, wq, count_include_pad, x)  # (means only)
    pad = np.full(1, -np.inf if is_max else 0.0, x.dtype)[0]
    yf = y.reshape((n_planes, oh * ow))
    workers = min(n_planes, workers)
    for t in prange(workers):
        plane = np.full(size, pad, x.dtype)
        acc = np.empty(rows * wq + VECTOR, x.dtype)
        for r in range(t * n_planes // workers, (t + 1) * n_planes // workers):
            load_plane(plan, x[r], plane, pad)
            for y0 in range(0, oh, rows):
                r_n = min(rows, oh - y0)
                if is_max:
                    _max_taps(acc, plane[y0 * wq:], offsets, r_n * wq)
                else:
                    _mean_taps(acc, plane[y0 * wq:], offsets, scales[y0 * wq:], r_n * wq)
                store_segment(plan, acc, y[r, y0:y0 + r_n], yf[r, y0 * ow:(y0 + r_n) * ow], -np.inf, np.inf)


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
    threads = numba.get_num_threads()

    def run(x):
        xf = float_operand(x).reshape([n * c] + spatial)
        y = np.empty((n * c,) + g.out, xf.dtype)
        _pool2d(xf, y, geom, is_max, cip, threads)
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
