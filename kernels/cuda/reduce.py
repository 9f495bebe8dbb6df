"""Reductions on the device: one thread per (outer, inner) output over an (outer, reduced, inner) view.

The reduced axes must be adjacent for that view; where they are not, the operand is first permuted
(the reduced axes moved last) by one gather. A thread folds its column in float64 and finishes it
(mean, sqrt, log) before writing. The axes are read at lowering: a reduction whose axes are computed at
run time runs on the host. float32 only.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ...backend.cuda_registry import lowers
from ...backend.registry import Kernel
from ...ops.reduce import reduced_axes, reduced_dims
from .device import empty, flat, gather, host_kernel, index_map, launch, require_float32, static_shape, upload

SUM, ABS_SUM, SQUARE_SUM, PROD, MAX, MIN, LOG_SUM_EXP = range(7)
NONE, MEAN, SQRT, LOG = range(4)

# op: (fold, finish)
MODES = {
    "reduce_sum": (SUM, NONE), "reduce_mean": (SUM, MEAN), "reduce_max": (MAX, NONE),
    "reduce_min": (MIN, NONE), "reduce_prod": (PROD, NONE), "reduce_l1": (ABS_SUM, NONE),
    "reduce_l2": (SQUARE_SUM, SQRT), "reduce_sum_square": (SQUARE_SUM, NONE), "reduce_log_sum": (SUM, LOG),
    "reduce_log_sum_exp": (LOG_SUM_EXP, NONE),
}


@cuda.jit(device=True)
def _fold(x, base, n, inner, mode):
    """The fold of x[base + j * inner] over j < n by ``mode`` (a NaN wins max and min); log-sum-exp
    shifts by the maximum (0 where that is infinite) so large values do not overflow."""
    if mode == MAX or mode == MIN or mode == LOG_SUM_EXP:
        acc = -math.inf if mode != MIN else math.inf
        for j in range(n):
            t = float64(x[base + j * inner])
            if t != t or (t < acc if mode == MIN else t > acc):
                acc = t
        if mode != LOG_SUM_EXP:
            return acc
        shift = acc if math.isfinite(acc) else float64(0)
        s = float64(0)
        for j in range(n):
            s += math.exp(float64(x[base + j * inner]) - shift)
        return math.log(s) + shift
    acc = float64(1) if mode == PROD else float64(0)
    for j in range(n):
        t = float64(x[base + j * inner])
        if mode == SUM:
            acc += t
        elif mode == ABS_SUM:
            acc += abs(t)
        elif mode == SQUARE_SUM:
            acc += t * t
        else:
            acc *= t
    return acc


@cuda.jit(cache=True)
def _reduce(x, y, n, inner, mode, finish):
    """y[o * inner + i] = the finished fold of x [outer, n, inner] over its middle axis."""
    t = cuda.grid(1)
    step = cuda.gridsize(1)
    while t < y.shape[0]:
        o, i = t // inner, t % inner
        v = _fold(x, o * n * inner + i, n, inner, mode)
        if finish == MEAN:
            v = v / n
        elif finish == SQRT:
            v = math.sqrt(v)
        elif finish == LOG:
            v = math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan)
        y[t] = v
        t += step


def rows_view(shape, axes):
    """(permutation index map or None, outer, n, inner): how to see ``shape`` as [outer, n, inner] with
    n running over ``axes`` (permuted so that they are adjacent, last, when they are not already)."""
    axes = sorted(axes)
    if axes and axes != list(range(axes[0], axes[-1] + 1)):
        keep = [a for a in range(len(shape)) if a not in axes]
        perm = np.transpose(index_map(shape), keep + axes).ravel()
        return perm, math.prod(shape[a] for a in keep), math.prod(shape[a] for a in axes), 1
    if not axes:
        return None, math.prod(shape), 1, 1
    return (None, math.prod(shape[:axes[0]]), math.prod(shape[a] for a in axes),
            math.prod(shape[axes[-1] + 1:]))


@lowers(*MODES, family="reduce")
def lower_reduction(node):
    """reduce_*: one thread per output over the reduced axes (axes read at lowering: else on the host)."""
    require_float32(node, node.inputs[0], node.outputs[0])
    axes_in = node.inputs[1] if len(node.inputs) > 1 else None
    if axes_in is not None and axes_in.const_value is None:
        return host_kernel(node)
    shape = static_shape(node.inputs[0], node)
    noop = node.attrs["noop_with_empty_axes"]
    axes = reduced_axes(len(shape), None if axes_in is None else axes_in.const_value, noop)
    perm, outer, n, inner = rows_view(shape, axes)
    perm = None if perm is None else upload(perm)
    out_shape = reduced_dims(shape, axes, node.attrs["keepdims"])
    mode, finish = MODES[node.op]

    def run(x, _axes=None):
        src = x if perm is None else gather(x, perm, (x.size,))
        y = empty(out_shape, np.float32)
        if y.size:
            _reduce[launch(y.size)](flat(src), flat(y), n, inner, mode, finish)
        return y
    return Kernel(run, algo="rows")
