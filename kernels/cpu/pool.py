"""Pool kernels: window max/average pooling over [N*C, H, W] and global pooling over [N*C, spatial].

A 1-D pool runs as the 2-D kernel on a height-1 image. The window kernel loads each plane into the
phase-split padded plane of depthwise.py (padding -inf for max, 0 for mean), where every window tap is one
contiguous loop over a run of outputs, borders included: the loops vectorize and hold no branch. A mean
multiplies the sum by a per-output table of 1 / count. A 2x2 stride-2 window without padding (VGG's max
pools) never leaves the image and is read straight from the input, a row pair at a time, with no plane
(measured 2.6x faster than the planes on VGG-11's first pool). Planes of N*C run in parallel, as do the
rows of the global pools, whose row kernel also serves a mean over trailing axes (reduce.py). Layouts
and tables are worked out once, at lowering, and float32/float64 results are written into the output
buffer the executor gives (the output-buffer protocol of irc.backend.registry).

Operands other than float32/float64 run in float32 (float16) or float64 (integers) and are converted
back, so each kernel has one compiled signature per float type.
"""
import numpy as np
from numba import njit, prange

from ...backend.registry import Kernel, lowers
from ...errors import IrcError
from ...ops.pool import height_one_attrs, pool_geometry
from ...runtime import threads
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
def _pool2d(x, y, plan, scales, is_max, workers):
    """y[r, oh, ow] = max or mean of x[r] over the window at (oh, ow), in parallel over the planes r by up
    to ``workers`` threads: each plane is loaded into its phase-split padded plane (``plan``, from
    depthwise.plane_plan), padded with -inf for max and 0 for mean, and every window tap is then one
    contiguous loop over a run of outputs; a mean is scaled by ``scales`` (``_mean_scales``)."""
    n_planes, oh, ow = y.shape
    size, wq, rows, offsets = plan[0], plan[1], plan[2], plan[6]
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


@njit(parallel=True, cache=True, fastmath=FAST)
def _pool2x2(x, y, is_max, workers):
    """y[r, i, j] = max or mean of x[r, 2i:2i + 2, 2j:2j + 2]: a 2x2 stride-2 window without padding read
    straight from the input, a row pair at a time (no padded plane: the window never leaves the image),
    in parallel over the planes r by up to ``workers`` threads."""
    n_planes, oh, ow = y.shape
    workers = min(n_planes, workers)
    for t in prange(workers):
        for r in range(t * n_planes // workers, (t + 1) * n_planes // workers):
            for i in range(oh):
                top, bottom, out = x[r, 2 * i], x[r, 2 * i + 1], y[r, i]
                for j in range(ow):
                    a, b, c, d = top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]
                    if is_max:
                        ab = a if (a > b) | (a != a) else b
                        cd = c if (c > d) | (c != c) else d
                        out[j] = ab if (ab > cd) | (ab != ab) else cd
                    else:
                        out[j] = (a + b + c + d) * 0.25


class WindowPool:
    """A max or average pool of a [N, C, (H,) W] operand as [N*C, H, W] planes (a 1-D pool has height 1),
    laid out once: ``into(out, x)`` writes the result into out (the output-buffer protocol of
    irc.backend.registry) when the result is float32 or float64; calling it makes a fresh result of the
    result dtype (other dtypes compute in float_operand's)."""

    def __init__(self, node, spatial, attrs):
        n, c = node.inputs[0].type.shape[:2]
        g = pool_geometry(spatial, attrs)
        kh, kw, sh, sw, dh, dw, pt, pl, pb, pr = geom = g.kernel + g.strides + g.dilations + g.pads
        h, w = spatial
        self.planes, self.out = [n * c] + list(spatial), (n * c,) + tuple(g.out)
        self.shape, self.dtype = node.outputs[0].type.shape, node.outputs[0].type.numpy_dtype
        self.is_max = node.op == "maxpool"
        self.direct = geom[:6] == (2, 2, 2, 2, 1, 1) and not any(g.pads) and 2 * g.out[0] <= h and 2 * g.out[1] <= w
        self.plan = plane_plan(h, w, g.out[0], g.out[1], kh, kw, sh, sw, dh, dw, pt, pl)
        cip = int(node.attrs.get("count_include_pad", 0))
        oh = 0 if self.is_max else g.out[0]  # (means only)
        self.scales = {dt: _mean_scales(geom, h, w, oh, g.out[1], self.plan[1], cip, np.zeros(1, dt))
                       for dt in (np.float32, np.float64)}
        if self.dtype in (np.float32, np.float64):
            self.into = self._into

    def _run(self, y, xf):
        if self.direct:
            _pool2x2(xf, y, self.is_max, threads.current())
        else:
            _pool2d(xf, y, self.plan, self.scales[xf.dtype.type], self.is_max, threads.current())

    def _into(self, out, x):
        self._run(out.reshape(self.out), np.ascontiguousarray(x).reshape(self.planes))

    def __call__(self, x):
        xf = float_operand(x).reshape(self.planes)
        y = np.empty(self.out, xf.dtype)
        self._run(y, xf)
        return y.reshape(self.shape).astype(self.dtype, copy=False)


@lowers("maxpool", "avgpool", family="pool")
def lower_pool(node):
    """Window pooling of a rank-4 (2-D) operand, or of a rank-3 (1-D) one as a height-1 image."""
    t = node.inputs[0].type
    if not t.is_static or t.rank not in (3, 4):
        raise IrcError(f"{node.op} supports 1-D and 2-D pooling of static shapes, got input {t}")
    spatial = list(t.shape[2:])
    if t.rank == 3:
        spatial, attrs = [1] + spatial, height_one_attrs(node.attrs)
    else:
        attrs = node.attrs
    pool = WindowPool(node, spatial, attrs)
    return Kernel(pool, algo="direct-2x2" if pool.direct else "direct")


@njit(parallel=True, cache=True, fastmath=FAST)
def _global_pool(x, y, is_max):
    """y[r] = max or mean of the row x[r, :] (a mean sums in float64), in parallel over the rows."""
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


class RowPool:
    """Max or mean over the trailing ``n`` elements of each row of a C-contiguous operand of ``rows`` rows
    (the spatial dims of a global pool, the last axes of a reduction): ``into(out, x)`` writes the
    result into out (the output-buffer protocol of irc.backend.registry) when the result is float32 or
    float64; calling it makes a fresh result of ``shape`` and ``dtype`` (other dtypes compute in
    float_operand's)."""

    def __init__(self, rows, shape, dtype, is_max):
        self.rows, self.shape, self.dtype, self.is_max = rows, tuple(shape), np.dtype(dtype), is_max
        if self.dtype in (np.float32, np.float64):
            self.into = self._into

    def _into(self, out, x):
        _global_pool(np.ascontiguousarray(x).reshape(self.rows, -1), out.reshape(self.rows), self.is_max)

    def __call__(self, x):
        xf = float_operand(x)
        y = np.empty(self.rows, xf.dtype)
        _global_pool(xf.reshape(self.rows, -1), y, self.is_max)
        return y.reshape(self.shape).astype(self.dtype, copy=False)


@lowers("global_avgpool", "global_maxpool", family="pool")
def lower_global_pool(node):
    """Max or mean over all spatial dims, one row per (sample, channel)."""
    t, out = node.inputs[0].type, node.outputs[0].type
    if not t.is_static:
        raise IrcError(f"{node.op} needs a static input shape, got input {t}")
    return Kernel(RowPool(t.shape[0] * t.shape[1], out.shape, out.numpy_dtype, node.op == "global_maxpool"))
