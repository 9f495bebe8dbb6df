"""Norm kernels: normalizations, batchnorm's channel affine map, LRN, softmax and log-softmax.

- ``_normalize_rows`` serves layernorm, instance_norm and group_norm: x is viewed as [R, L, S] where
  each row of L*S contiguous elements is normalized (mean and variance accumulated in float64, two
  passes over the row while it is in cache), then mapped by the row's group's scale[g, l] and bias[g, l]
  (g = r % G): layernorm is [outer, inner, 1] with G = 1, group norm [N*G, C/G, spatial], instance norm
  [N*C, 1, spatial]. Constant scale and bias are packed once, in x's dtype.
- ``_affine_channels``: batchnorm, y = x * a[m] + b[m] over [N, M, S] (a, b folded from the statistics
  once when they are constants).
- ``_softmax_rows``: softmax / log-softmax along axis 1 of an [outer, n, inner] view (no copy for any
  axis): rows of contiguous elements when inner is 1, else columns vectorized along inner. exp is
  ``vmath.vexp``, which vectorizes for float32. ``softmax_row`` and ``exp_shifted_sum`` are also the
  softmax of the attention kernel (fused.py).

Row kernels run serially on small tensors (a kernel call then costs about a microsecond) and split their
rows across numba's pool from a size where waking the pool pays for itself (measured: softmax, bound by
its exp, gains from about 32K elements; the normalizations, bound by memory, only on tensors too big for
a core's L2 yet within L3).
Operands reach the kernels C-contiguous and read-only (``frozen``), one signature per float dtype.
"""
import math

import numba
import numpy as np
from numba import njit, prange

from ...backend.registry import Kernel, lowers
from ...ops.tensor import norm_axis
from .gemm import frozen
from .pool import FAST, float_operand
from .vmath import vexp, vmax

# elements from which a row kernel splits its rows across numba's pool
SOFTMAX_PARALLEL_MIN = 1 << 15
NORMALIZE_PARALLEL_MIN = 1 << 18


def _threads(size: int, minimum: int) -> int:
    """Workers a row kernel over ``size`` elements uses: 1 below ``minimum``."""
    return numba.get_num_threads() if size >= minimum else 1


def _params(*arrays):
    """Operand parameters as fresh (writable, contiguous) float64 arrays; None stays None."""
    return [None if a is None else np.array(a, dtype=np.float64) for a in arrays]


# --- layernorm, group norm, instance norm -----------------------------------------------------------

@njit(cache=True, fastmath=FAST)
def _moments(row, eps):
    """(mean, 1 / sqrt(variance + eps)) of a contiguous row, accumulated in float64."""
    total = 0.0
    for i in range(row.shape[0]):
        total += row[i]
    m = total / row.shape[0]
    sq = 0.0
    for i in range(row.shape[0]):
        d = row[i] - m
        sq += d * d
    return m, 1.0 / math.sqrt(sq / row.shape[0] + eps)


@njit(cache=True, fastmath=FAST)
def _normalize_rows(x, scale, bias, eps, y, mean, invstd, lo, hi):
    """Rows lo..hi of x [R, L, S]: y = (x - mean) * invstd * scale[g, l] + bias[g, l] with g = r % G
    (scale and bias [G, L], x's dtype); the row statistics go to mean[r], invstd[r] (x's dtype, so the
    row loops compute in it)."""
    n_g, n_l = scale.shape
    n_s = x.shape[2]
    size = n_l * n_s
    xs, ys = x.reshape(x.shape[0], size), y.reshape(y.shape[0], size)
    for r in range(lo, hi):
        row, out = xs[r], ys[r]
        mean[r], invstd[r] = _moments(row, eps)
        m, inv = mean[r], invstd[r]
        sc, bi = scale[r % n_g], bias[r % n_g]
        if n_s == 1:
            for l in range(n_l):
                out[l] = (row[l] - m) * (inv * sc[l]) + bi[l]
        else:
            for l in range(n_l):
                a = inv * sc[l]
                b = bi[l] - m * a
                for i in range(l * n_s, (l + 1) * n_s):
                    out[i] = row[i] * a + b


@njit(cache=True, parallel=True)
def _normalize(x, scale, bias, eps, y, mean, invstd, tasks):
    """``_normalize_rows`` over all rows: in ``tasks`` parallel slices, or serially (numba's pool left
    asleep) for one."""
    rows = x.shape[0]
    if tasks == 1:
        _normalize_rows(x, scale, bias, eps, y, mean, invstd, 0, rows)
    else:
        for t in prange(tasks):
            _normalize_rows(x, scale, bias, eps, y, mean, invstd, t * rows // tasks, (t + 1) * rows // tasks)


def pack_params(scale, bias, groups: int, dtype) -> tuple:
    """scale and bias (None: zeros) as frozen [groups, per group] arrays of ``dtype``."""
    sc = np.asarray(scale).reshape(groups, -1)
    bi = np.zeros_like(sc) if bias is None else np.asarray(bias).reshape(groups, -1)
    return frozen(sc, dtype), frozen(bi, dtype)


def normalize(xf: np.ndarray, rows: int, params: tuple, eps: float):
    """``_normalize_rows`` over a float operand viewed as [rows, L, S] (L from the packed ``params``);
    returns (y, mean [rows], invstd [rows]) in its dtype."""
    xf = frozen(xf, None)
    per_row = rows * params[0].shape[1]
    view = xf.reshape(rows, params[0].shape[1], xf.size // per_row if per_row else 1)
    y = np.empty(view.shape, xf.dtype)
    mean, invstd = np.empty(rows, xf.dtype), np.empty(rows, xf.dtype)
    if xf.size:
        tasks = min(rows, _threads(xf.size, NORMALIZE_PARALLEL_MIN))
        _normalize(view, *params, float(eps), y, mean, invstd, tasks)
    return y.reshape(xf.shape), mean, invstd


def _channel_norm(node, groups_of):
    """The kernel of instance_norm / group_norm: per (sample, group) statistics, ``groups_of(x)`` groups
    of the channels (axis 1), scale and bias per channel."""
    dtype, eps = node.outputs[0].type.numpy_dtype, node.attrs["epsilon"]

    def run(x, scale, bias):
        xf, groups = float_operand(x), groups_of(x)
        params = pack_params(scale, bias, groups, xf.dtype)
        return normalize(xf, x.shape[0] * groups, params, eps)[0].astype(dtype, copy=False)
    return Kernel(run)


@lowers("instance_norm", family="norm")
def lower_instance_norm(node):
    """Per (sample, channel) statistics over the spatial dims."""
    return _channel_norm(node, lambda x: x.shape[1])


@lowers("group_norm", family="norm")
def lower_group_norm(node):
    """Per (sample, group) statistics over the group's channels and the spatial dims."""
    groups = node.attrs["num_groups"]
    return _channel_norm(node, lambda x: groups)


@lowers("layernorm", family="norm")
def lower_layernorm(node):
    """Statistics over the dims from ``axis`` on: rows of an [outer, inner, 1] view. Constant scale and
    bias are packed once per normalized shape."""
    dtype, eps = node.outputs[0].type.numpy_dtype, node.attrs["epsilon"]
    u, axis = node.outputs[1].type.numpy_dtype, node.attrs["axis"]
    constant = all(v is None or v.const_value is not None for v in node.inputs[1:])
    packed = {}

    def params(xf, a, scale, bias):
        key = xf.shape[a:]
        p = packed.get(key) if constant else None
        if p is None:
            sc = np.broadcast_to(scale, key)
            bi = None if bias is None else np.broadcast_to(bias, key)
            p = pack_params(sc, bi, 1, xf.dtype)
            if constant:
                packed[key] = p
        return p

    def run(x, scale, bias=None):
        a = norm_axis(axis, x.ndim, "layernorm axis")
        xf = float_operand(x)
        y, mean, inv = normalize(xf, math.prod(x.shape[:a]), params(xf, a, scale, bias), eps)
        stats = x.shape[:a] + (1,) * (x.ndim - a)
        return y.astype(dtype, copy=False), mean.reshape(stats).astype(u, copy=False), \
            inv.reshape(stats).astype(u, copy=False)
    return Kernel(run)


@njit(parallel=True, cache=True, fastmath=FAST)
def _affine_channels(x, a, b, y):
    """y[n, m, s] = x[n, m, s] * a[m] + b[m]."""
    n_n, n_m, n_s = x.shape
    for r in prange(n_n * n_m):
        n, m = r // n_m, r % n_m
        am, bm = a[m], b[m]
        for s in range(n_s):
            y[n, m, s] = x[n, m, s] * am + bm


def _batchnorm_affine(scale, bias, mean, var, eps):
    """(a, b) with batchnorm(x) = x * a + b, flattened (per channel or per activation)."""
    scale, bias, mean, var = _params(scale, bias, mean, var)
    a = scale / np.sqrt(var + eps)
    return np.ascontiguousarray(a.reshape(-1)), np.ascontiguousarray((bias - mean * a).reshape(-1))


@lowers("batchnorm", family="norm")
def lower_batchnorm(node):
    """x * a + b per channel; a and b are folded at lowering when the statistics are constants."""
    dtype, eps = node.outputs[0].type.numpy_dtype, node.attrs["epsilon"]
    consts = [v.const_value if v is not None else None for v in node.inputs[1:5]]
    folded = _batchnorm_affine(*consts, eps) if all(c is not None for c in consts) else None

    def run(x, scale, bias, mean, var):
        a, b = folded if folded is not None else _batchnorm_affine(scale, bias, mean, var, eps)
        xf = float_operand(x)
        view = xf.reshape(x.shape[0], a.shape[0], -1)
        y = np.empty_like(view)
        _affine_channels(view, a, b, y)
        return y.reshape(x.shape).astype(dtype, copy=False)
    return Kernel(run)


@njit(parallel=True, cache=True)
def _lrn(x, y, size, alpha, beta, bias):
    """y[n, c, s] = x / (bias + alpha / size * sum of x[n, c', s]^2 over the window around c) ** beta."""
    n_n, n_c, n_s = x.shape
    before = (size - 1) // 2
    after = size - 1 - before
    for r in prange(n_n * n_c):
        n, c = r // n_c, r % n_c
        lo, hi = max(0, c - before), min(n_c, c + after + 1)
        for s in range(n_s):
            sq = 0.0
            for k in range(lo, hi):
                v = x[n, k, s]
                sq += v * v
            y[n, c, s] = x[n, c, s] / (bias + alpha / size * sq) ** beta


@lowers("lrn", family="norm")
def lower_lrn(node):
    """Local response normalization across channels."""
    dtype = node.outputs[0].type.numpy_dtype
    size, alpha, beta, bias = (node.attrs[k] for k in ("size", "alpha", "beta", "bias"))

    def run(x):
        xf = float_operand(x)
        view = xf.reshape(x.shape[0], x.shape[1], -1)
        y = np.empty_like(view)
        _lrn(view, y, int(size), float(alpha), float(beta), float(bias))
        return y.reshape(x.shape).astype(dtype, copy=False)
    return Kernel(run)


# --- softmax, log-softmax -------------------------------------------------------------------------

@njit(cache=True, fastmath=FAST)
def exp_shifted_sum(src, shift, out):
    """out[i] = exp(src[i] - shift), and their sum (in the rows' dtype: partial sums of at most 1 each,
    which a float64 accumulator would make about twice as slow); src and out must not overlap (the loop
    vectorizes only where they do not)."""
    total = out.dtype.type(0)
    for i in range(src.shape[0]):
        e = vexp(src[i] - shift)
        out[i] = e
        total += e
    return total


@njit(cache=True, fastmath=FAST)
def softmax_row(src, out, log):
    """out = softmax(src) (log-softmax when ``log``), shifted by the row's max; src and out apart."""
    top = vmax(src)
    total = exp_shifted_sum(src, top, out)
    if log:
        shift = top + math.log(total)
        for i in range(src.shape[0]):
            out[i] = src[i] - shift
    else:
        inv = out.dtype.type(1) / total
        for i in range(src.shape[0]):
            out[i] *= inv


@njit(cache=True, fastmath=FAST)
def _softmax_columns(x, y, log, top, total):
    """Softmax along axis 0 of x [n, inner] into y, vectorized along inner (top, total: scratch)."""
    n, inner = x.shape
    for i in range(inner):
        top[i] = x[0, i]
        total[i] = 0.0
    for k in range(1, n):
        for i in range(inner):
            v = x[k, i]
            top[i] = v if v > top[i] else top[i]
    for k in range(n):
        for i in range(inner):
            e = vexp(x[k, i] - top[i])
            y[k, i] = e
            total[i] += e
    for i in range(inner):
        total[i] = top[i] + math.log(total[i]) if log else 1 / total[i]
    for k in range(n):
        for i in range(inner):
            y[k, i] = x[k, i] - total[i] if log else y[k, i] * total[i]


@njit(cache=True, fastmath=FAST)
def _softmax_rows(x, y, log, lo, hi):
    """Softmax (log-softmax when ``log``) along axis 1 of x[lo:hi] ([outer, n, inner]) into y."""
    outer, n, inner = x.shape
    if inner == 1:
        xs, ys = x.reshape(outer, n), y.reshape(outer, n)
        for r in range(lo, hi):
            softmax_row(xs[r], ys[r], log)
    else:
        top, total = np.empty(inner, x.dtype), np.empty(inner)
        for r in range(lo, hi):
            _softmax_columns(x[r], y[r], log, top, total)


@njit(cache=True, parallel=True)
def _softmax(x, y, log, tasks):
    """``_softmax_rows`` over all rows: in ``tasks`` parallel slices, or serially for one."""
    rows = x.shape[0]
    if tasks == 1:
        _softmax_rows(x, y, log, 0, rows)
    else:
        for t in prange(tasks):
            _softmax_rows(x, y, log, t * rows // tasks, (t + 1) * rows // tasks)


@lowers("softmax", "log_softmax", family="norm")
def lower_softmax(node):
    """Along the axis of an [outer, n, inner] view of the operand; float32 and float64 results are
    written straight into the result buffer the executor gives (``into``)."""
    dtype, axis, log = node.outputs[0].type.numpy_dtype, node.attrs["axis"], node.op == "log_softmax"

    def args(out, x):
        """_softmax's operands writing into out."""
        a = norm_axis(axis, x.ndim, f"{node.op} axis")
        rows = (math.prod(x.shape[:a]), x.shape[a], math.prod(x.shape[a + 1:]))
        tasks = min(rows[0], _threads(out.size, SOFTMAX_PARALLEL_MIN))
        return frozen(float_operand(x), None).reshape(rows), out.reshape(rows), log, tasks

    def into(out, x):
        if out.size:
            _softmax(*args(out, x))

    def bind(out, x):
        if not out.size or not x.flags.c_contiguous:    # (a strided operand is copied on every run)
            return into, (out, x)
        return _softmax, args(out, x)

    def run(x):
        xf = float_operand(x)
        y = np.empty(x.shape, xf.dtype)
        into(y, xf)
        return y.astype(dtype, copy=False)
    if dtype not in (np.float32, np.float64):
        return Kernel(run)
    return Kernel(run, into=into, bind=bind)
