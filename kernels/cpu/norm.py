"""Norm kernels: normalizations, batchnorm's channel affine map, LRN and softmax.

- ``_normalize`` serves instance_norm, group_norm and layernorm: x is viewed as [N, G, L, S] where each
  (n, g) row of L*S contiguous elements is normalized (mean and variance in float64, two passes over
  the row while it is in cache), then mapped by scale[g, l] and bias[g, l]: group norm is [N, G, C/G,
  spatial], instance norm [N, C, 1, spatial], layernorm [outer, 1, normalized size, 1].
- ``_affine_channels``: batchnorm, y = x * a[m] + b[m] over [N, M, S] (a, b folded from the statistics
  once when they are constants).
- ``_softmax_rows``: softmax / log-softmax of each row of an [outer, axis] view; an axis that is not last
  is moved last first (a copy) and the result moved back. exp is evaluated by ``_exp_below_zero``, a
  polynomial that vectorizes (numba's math.exp is a scalar libm call, several times slower here).
Rows run in parallel. Parameters are float64, so each kernel has one signature per operand float type.
"""
import math

import numpy as np
from numba import njit, prange

from ...backend.registry import Kernel, lowers
from ...ops.tensor import norm_axis
from .pool import FAST, float_operand


def _params(*arrays):
    """Operand parameters as fresh (writable, contiguous) float64 arrays; None stays None."""
    return [None if a is None else np.array(a, dtype=np.float64) for a in arrays]


@njit(parallel=True, cache=True, fastmath=FAST)
def _normalize(x, scale, bias, eps, y, mean, invstd):
    """y[n, g, l, s] = (x - mean[n, g]) * invstd[n, g] * scale[g, l] + bias[g, l], statistics of x[n, g]."""
    n_n, n_g, n_l, n_s = x.shape
    size = n_l * n_s
    for r in prange(n_n * n_g):
        n, g = r // n_g, r % n_g
        row, out = x[n, g].reshape(size), y[n, g].reshape(size)
        total = 0.0
        for i in range(size):
            total += row[i]
        m = total / size
        sq = 0.0
        for i in range(size):
            d = row[i] - m
            sq += d * d
        inv = 1.0 / math.sqrt(sq / size + eps)
        mean[n, g], invstd[n, g] = m, inv
        sc, bi = scale[g], bias[g]
        if n_s == 1:
            for l in range(n_l):
                out[l] = (row[l] - m) * (inv * sc[l]) + bi[l]
        else:
            for l in range(n_l):
                a = inv * sc[l]
                b = bi[l] - m * a
                src, dst = row[l * n_s:(l + 1) * n_s], out[l * n_s:(l + 1) * n_s]
                for i in range(n_s):
                    dst[i] = src[i] * a + b


def normalize(x: np.ndarray, groups: int, channels: int, scale, bias, eps: float):
    """Run ``_normalize`` on x viewed as [x.shape[0], groups, channels / groups, rest]; scale and bias
    are per channel ([channels] or broadcastable to it). Returns (y in the compute dtype, mean, invstd)."""
    xf = float_operand(x)
    n = x.shape[0]
    view = xf.reshape(n, groups, channels // groups, -1)
    per_group = (groups, channels // groups)
    sc, bi = _params(np.broadcast_to(scale, (channels,)).reshape(per_group),
                     np.zeros(per_group) if bias is None else np.broadcast_to(bias, (channels,)).reshape(per_group))
    y = np.empty_like(view)
    mean, invstd = np.empty((n, groups)), np.empty((n, groups))
    _normalize(view, sc, bi, float(eps), y, mean, invstd)
    return y.reshape(x.shape), mean, invstd


@lowers("instance_norm", family="norm")
def lower_instance_norm(node):
    """Per (sample, channel) statistics over the spatial dims."""
    dtype, eps = node.outputs[0].type.numpy_dtype, node.attrs["epsilon"]

    def run(x, scale, bias):
        return normalize(x, x.shape[1], x.shape[1], scale, bias, eps)[0].astype(dtype, copy=False)
    return Kernel(run)


@lowers("group_norm", family="norm")
def lower_group_norm(node):
    """Per (sample, group) statistics over the group's channels and the spatial dims."""
    dtype, eps, groups = node.outputs[0].type.numpy_dtype, node.attrs["epsilon"], node.attrs["num_groups"]

    def run(x, scale, bias):
        return normalize(x, groups, x.shape[1], scale, bias, eps)[0].astype(dtype, copy=False)
    return Kernel(run)


@lowers("layernorm", family="norm")
def lower_layernorm(node):
    """Statistics over the dims from ``axis`` on: rows of an [outer, inner] view."""
    dtype, eps = node.outputs[0].type.numpy_dtype, node.attrs["epsilon"]
    u, axis = node.outputs[1].type.numpy_dtype, node.attrs["axis"]

    def run(x, scale, bias=None):
        a = norm_axis(axis, x.ndim, "layernorm axis")
        inner = math.prod(x.shape[a:])
        flat = x.reshape(-1, inner, 1)
        sc = np.broadcast_to(scale, x.shape[a:]).reshape(-1)
        bi = None if bias is None else np.broadcast_to(bias, x.shape[a:]).reshape(-1)
        y, mean, inv = normalize(flat, 1, inner, sc, bi, eps)
        stats = x.shape[:a] + (1,) * (x.ndim - a)
        return y.reshape(x.shape).astype(dtype, copy=False), mean.reshape(stats).astype(u), \
            inv.reshape(stats).astype(u)
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


SOFTMAX_BLOCK = 1 << 14   # elements of rows per parallel task
LOG2E, LN2 = 1.4426950408889634, 0.6931471805599453
# 1/k! for k = 0..9: exp on [-ln2/2, ln2/2] to a relative error below 3e-10
EXP_TAYLOR = (1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320, 1.0 / 362880)


@njit(cache=True, fastmath=FAST | {"nnan"})
def _row_max(row):
    """max of a row (vectorizes; a NaN in the row makes the softmax NaN anyway through exp)."""
    top = -np.inf
    for i in range(row.shape[0]):
        v = row[i]
        top = v if v > top else top
    return top


@njit(cache=True, fastmath=FAST)
def _exp_below_zero(src, shift, out, frac, bits):
    """out[i] = exp(src[i] - shift) for src[i] <= shift, and their sum. No libm call, so it vectorizes:
    exp(v) = 2**k * exp(r) with k = round(v / ln2), |r| <= ln2/2 (polynomial), 2**k built from its
    exponent bits in an int64 buffer viewed as float64; below 2**-1022 the result is 0."""
    for i in range(src.shape[0]):
        t = (src[i] - shift) * LOG2E
        t = -1023.0 if t < -1022.0 else t   # (a NaN stays NaN)
        k = np.floor(t + 0.5)
        frac[i] = (t - k) * LN2
        bits[i] = (np.int64(k if k == k else 0.0) + 1023) << 52
    scale = bits.view(np.float64)
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 = EXP_TAYLOR
    total = 0.0
    for i in range(src.shape[0]):
        r = frac[i]
        p = c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * (c7 + r * (c8 + r * c9))))))))
        e = p * scale[i]
        out[i] = e
        total += e
    return total


@njit(parallel=True, cache=True, fastmath=FAST)
def _softmax_rows(x, y, log, block):
    """Each row of y: softmax (or log-softmax) of the row of x, shifted by the row's max; rows run in
    parallel blocks of ``block`` rows sharing scratch buffers."""
    rows, n = x.shape
    for b in prange((rows + block - 1) // block):
        frac, bits = np.empty(n), np.empty(n, np.int64)
        for r in range(b * block, min(rows, (b + 1) * block)):
            row, out = x[r], y[r]
            top = _row_max(row)
            total = _exp_below_zero(row, top, out, frac, bits)
            if log:
                shift = top + math.log(total)
                for i in range(n):
                    out[i] = row[i] - shift
            else:
                inv = 1.0 / total
                for i in range(n):
                    out[i] *= inv


@lowers("softmax", "log_softmax", family="norm")
def lower_softmax(node):
    """Rows of the operand with the axis last (moved there by a copy when it is not)."""
    dtype, axis, log = node.outputs[0].type.numpy_dtype, node.attrs["axis"], node.op == "log_softmax"

    def run(x):
        a = norm_axis(axis, x.ndim, f"{node.op} axis")
        moved = float_operand(np.moveaxis(x, a, -1))
        y = np.empty_like(moved)
        if x.size:
            n = x.shape[a]
            _softmax_rows(moved.reshape(-1, n), y.reshape(-1, n), log, max(1, SOFTMAX_BLOCK // n))
        return np.ascontiguousarray(np.moveaxis(y, -1, a)).astype(dtype, copy=False)
    return Kernel(run)
