"""Resize kernel: one numba kernel resamples one axis; a resize runs it once per axis that changes.

Every resize mode is separable, so the op (``irc.ops.pool.resize``) is described per axis by a table of
input taps and weights for each output index (``resize_tables``): nearest has one tap of weight 1, linear
two, cubic four. The tables are built once at lowering when the input shape and the scales or sizes are
constants, else at each run. The kernel views the operand as [outer, axis, inner] and accumulates in
float64; (outer) rows run in parallel.
"""
import math

import numpy as np
from numba import njit, prange

from ...backend.registry import Kernel, lowers
from ...ops.pool import resize_result, resize_tables
from .pool import FAST, float_operand


@njit(parallel=True, cache=True, fastmath=FAST)
def _resample_axis(x, idx, w, y):
    """y[o, j, :] = sum over k of w[j, k] * x[o, idx[j, k], :] (a whole inner row at a time; one
    element when the resampled axis is the last)."""
    n_o, _, n_i = x.shape
    n_j, n_k = idx.shape
    for o in prange(n_o):
        if n_i == 1:
            src = x[o, :, 0]
            for j in range(n_j):
                acc = 0.0
                for k in range(n_k):
                    acc += w[j, k] * src[idx[j, k]]
                y[o, j, 0] = acc
            continue
        for j in range(n_j):
            out = y[o, j]
            out[:] = 0.0
            for k in range(n_k):
                wk, src = w[j, k], x[o, idx[j, k]]
                for i in range(n_i):
                    out[i] += wk * src[i]


def resample(x: np.ndarray, steps) -> np.ndarray:
    """Apply each (axis, indices, weights) step of a resize table to the float operand x in turn: the
    axes that shrink the data most first, ties innermost first (the innermost axis is the one whose
    pass gathers element by element, so it runs on the smaller array)."""
    order = sorted(steps, key=lambda st: (st[1].shape[0] / x.shape[st[0]], -st[0]))
    for a, idx, w in order:
        outer, inner = math.prod(x.shape[:a]), math.prod(x.shape[a + 1:])
        y = np.empty(x.shape[:a] + (idx.shape[0],) + x.shape[a + 1:], x.dtype)
        _resample_axis(x.reshape(outer, x.shape[a], inner), idx, w, y.reshape(outer, idx.shape[0], inner))
        x = y
    return x


@lowers("resize", family="resize")
def lower_resize(node):
    """Per-axis resampling with tables from the op's definition."""
    attrs, dtype = dict(node.attrs), node.outputs[0].type.numpy_dtype
    operands = (list(node.inputs[1:]) + [None, None])[:2]
    fixed = node.inputs[0].type.is_static and all(v is None or v.const_value is not None for v in operands)
    tables = resize_tables(node.inputs[0].type.shape, *(None if v is None else v.const_value for v in operands),
                           attrs) if fixed else None

    def run(x, scales=None, sizes=None):
        out_shape, steps = tables or resize_tables(x.shape, scales, sizes, attrs)
        if x.size == 0 or 0 in out_shape:
            return np.zeros(out_shape, dtype)
        return resize_result(resample(float_operand(x), steps), dtype)
    return Kernel(run, algo=attrs["mode"])
