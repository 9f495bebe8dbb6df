"""Resize on the device: one kernel resamples one axis; a resize launches it once per axis that changes.

Every resize mode (nearest, linear, cubic, with each coordinate transformation and rounding rule) is
described per axis by the op's own tables (``ops.pool.resize_tables``): for each output index, the
input taps and their weights. The tables are built and uploaded once at lowering when the input shape
and the scales or sizes are constants (as in exported models), else built on the host at each run
from the downloaded scales or sizes. A thread computes one output element from its taps in float64.
The axes run in the CPU kernel's order (those that shrink the data most first). float32 only.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ...backend.cuda_registry import lowers
from ...backend.registry import Kernel
from ...ops.pool import resize_tables
from .device import download, empty, flat, launch, require_float32, static_shape, upload


@cuda.jit(cache=True)
def _resample_axis(x, idx, w, y, n_in, n_out, taps, inner):
    """y [outer, n_out, inner][o, j, i] = sum over k < taps of w[j, k] * x [outer, n_in, inner][o, idx[j, k], i]."""
    t = cuda.grid(1)
    step = cuda.gridsize(1)
    while t < y.shape[0]:
        i = t % inner
        j = (t // inner) % n_out
        base = (t // (inner * n_out)) * n_in * inner + i
        acc = float64(0)
        for k in range(taps):
            acc += w[j * taps + k] * x[base + idx[j * taps + k] * inner]
        y[t] = acc
        t += step


def _ordered_steps(shape, steps):
    """The resize's (axis, indices, weights) steps in the CPU kernel's order, each with the shape it
    starts from, its tables uploaded."""
    shape, out = list(shape), []
    for a, idx, w in sorted(steps, key=lambda st: (st[1].shape[0] / shape[st[0]], -st[0])):
        out.append((tuple(shape), a, upload(idx.astype(np.int64).ravel()), upload(w.astype(np.float64).ravel()),
                    idx.shape[1]))
        shape[a] = idx.shape[0]
    return out


def _resample(x, out_shape, steps):
    """x resampled by ``_ordered_steps`` tables to ``out_shape``."""
    if x.size == 0 or 0 in out_shape:
        return empty(out_shape, np.float32)
    for shape, a, idx, w, taps in steps:
        n_out = idx.size // taps
        y = empty(shape[:a] + (n_out,) + shape[a + 1:], np.float32)
        _resample_axis[launch(y.size)](flat(x), idx, w, flat(y), shape[a], n_out, taps, math.prod(shape[a + 1:]))
        x = y
    return x.reshape(tuple(out_shape))


@lowers("resize", family="resize")
def lower_resize(node):
    """Per-axis resampling with the op's tables (uploaded at lowering when they are fixed)."""
    require_float32(node, node.inputs[0], node.outputs[0])
    attrs = dict(node.attrs)
    shape = static_shape(node.inputs[0], node)
    operands = (list(node.inputs[1:]) + [None, None])[:2]
    if all(v is None or v.const_value is not None for v in operands):
        out_shape, steps = resize_tables(shape, *(None if v is None else v.const_value for v in operands), attrs)
        fixed = (out_shape, _ordered_steps(shape, steps))
        return Kernel(lambda x, *_: _resample(x, *fixed), algo=attrs["mode"])

    def run(x, scales=None, sizes=None):
        out_shape, steps = resize_tables(shape, download(scales), download(sizes), attrs)
        return _resample(x, out_shape, _ordered_steps(shape, steps))
    return Kernel(run, algo=attrs["mode"])
