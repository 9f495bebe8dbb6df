"""Normalizations on the device: softmax, layernorm, instance norm, batchnorm.

softmax and the statistics of layernorm/instance norm run one thread per row (the row read at a stride
for softmax over a middle axis), in float64: max, sum of exp shifted by it, write (softmax); mean, then
variance from the centered values, then the normalized row (norms). batchnorm is the per-channel affine
x * a + b with a, b folded on the host at lowering when the statistics are constants (as they are after
import), else computed on the host per run from the downloaded parameters. float32 only.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ...backend.cuda_registry import lowers
from ...backend.registry import Kernel
from ...ops.tensor import norm_axis
from .device import broadcast_param, download, empty, flat, launch, require_float32, static_shape, upload


@cuda.jit
def _softmax(x, y, n, inner, log):
    """Softmax (or log-softmax) of x [outer, n, inner] along its middle axis; one thread per column."""
    t = cuda.grid(1)
    step = cuda.gridsize(1)
    while t < x.shape[0] // n:
        base = (t // inner) * n * inner + t % inner
        m = -math.inf
        for j in range(n):
            v = float64(x[base + j * inner])
            m = v if (v > m or v != v) else m
        shift = m if math.isfinite(m) else float64(0)
        s = float64(0)
        for j in range(n):
            s += math.exp(float64(x[base + j * inner]) - shift)
        ls = math.log(s)
        for j in range(n):
            d = float64(x[base + j * inner]) - shift
            y[base + j * inner] = d - ls if log else math.exp(d - ls)
        t += step


@cuda.jit
def _normalize(x, scale, bias, y, mean, invstd, n, channels, per_row, eps, has_bias):
    """Rows of x [R, n] normalized to zero mean and unit variance, then * scale + bias: indexed by the
    position in the row, or by the row's channel (r % channels) with ``per_row``. mean and invstd get
    each row's statistics."""
    r = cuda.grid(1)
    step = cuda.gridsize(1)
    while r < mean.shape[0]:
        base = r * n
        s = float64(0)
        for j in range(n):
            s += x[base + j]
        mu = s / n
        q = float64(0)
        for j in range(n):
            d = x[base + j] - mu
            q += d * d
        inv = 1.0 / math.sqrt(q / n + eps)
        mean[r] = mu
        invstd[r] = inv
        for j in range(n):
            p = r % channels if per_row else j
            v = (x[base + j] - mu) * inv * scale[p]
            y[base + j] = v + bias[p] if has_bias else v
        r += step


@cuda.jit
def _affine_channels(x, a, b, y, spatial, channels):
    """y[i] = x[i] * a[c] + b[c] with c = (i // spatial) % channels."""
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < y.shape[0]:
        c = (i // spatial) % channels
        y[i] = x[i] * a[c] + b[c]
        i += step


@lowers("softmax", "log_softmax", family="norm")
def lower_softmax(node):
    """softmax/log_softmax along one axis: one thread per column of the [outer, n, inner] view."""
    require_float32(node, node.inputs[0], node.outputs[0])
    shape = static_shape(node.inputs[0], node)
    a = norm_axis(node.attrs["axis"], len(shape), "softmax axis")
    n, inner, log = shape[a], math.prod(shape[a + 1:]), node.op == "log_softmax"

    def run(x):
        y = empty(shape, np.float32)
        if y.size:
            _softmax[launch(y.size // n)](flat(x), flat(y), n, inner, log)
        return y
    return Kernel(run, algo="rows")


def _normalize_rows(x, scale, bias, rows, n, channels, per_row, eps):
    """(y, mean, invstd) of ``_normalize`` over x seen as [rows, n]; mean and invstd are [rows]."""
    y, mean, inv = empty(x.shape, np.float32), empty((rows,), np.float32), empty((rows,), np.float32)
    if rows and n:
        _normalize[launch(rows)](flat(x), flat(scale), flat(scale if bias is None else bias), flat(y), mean, inv,
                                 n, channels, per_row, eps, bias is not None)
    return y, mean, inv


@lowers("layernorm", family="norm")
def lower_layernorm(node):
    """Rows of the dims from ``axis`` on; scale and bias broadcast over a row."""
    require_float32(node, node.inputs[0], *node.outputs)
    shape = static_shape(node.inputs[0], node)
    a = norm_axis(node.attrs["axis"], len(shape), "layernorm axis")
    row, n, eps = shape[a:], math.prod(shape[a:]), float(node.attrs["epsilon"])
    stats = shape[:a] + (1,) * (len(shape) - a)

    def run(x, scale, bias=None):
        bias = None if bias is None else broadcast_param(bias, row)
        y, mean, inv = _normalize_rows(x, broadcast_param(scale, row), bias, math.prod(shape[:a]), n, 1,
                                       False, eps)
        return y, mean.reshape(stats), inv.reshape(stats)
    return Kernel(run, algo="rows")


@lowers("instance_norm", family="norm")
def lower_instance_norm(node):
    """Rows of (image, channel) over the spatial dims; scale and bias per channel."""
    require_float32(node, *node.inputs, node.outputs[0])
    shape = static_shape(node.inputs[0], node)
    eps = float(node.attrs["epsilon"])

    def run(x, scale, bias):
        return _normalize_rows(x, scale, bias, shape[0] * shape[1], math.prod(shape[2:]), shape[1], True, eps)[0]
    return Kernel(run, algo="rows")


def _batchnorm_affine(scale, bias, mean, var, eps):
    """(a, b) with batchnorm(x) = x * a + b, flattened float32 (per channel or per activation)."""
    scale, bias, mean, var = (np.asarray(download(p), np.float64) for p in (scale, bias, mean, var))
    a = scale / np.sqrt(var + eps)
    return upload((a.reshape(-1)).astype(np.float32)), upload((bias - mean * a).reshape(-1).astype(np.float32))


@lowers("batchnorm", family="norm")
def lower_batchnorm(node):
    """x * a + b per channel (or per activation, for parameters shaped like x without its batch)."""
    require_float32(node, node.inputs[0], node.outputs[0])
    shape, eps = static_shape(node.inputs[0], node), float(node.attrs["epsilon"])
    consts = [v.const_value for v in node.inputs[1:5]]
    folded = _batchnorm_affine(*consts, eps) if all(c is not None for c in consts) else None
    per_channel = len(static_shape(node.inputs[1], node)) == 1
    channels = shape[1] if per_channel else math.prod(shape[1:])
    spatial = math.prod(shape[2:]) if per_channel else 1

    def run(x, scale, bias, mean, var):
        a, b = folded if folded is not None else _batchnorm_affine(scale, bias, mean, var, eps)
        y = empty(shape, np.float32)
        if y.size:
            _affine_channels[launch(y.size)](flat(x), a, b, flat(y), spatial, channels)
        return y
    return Kernel(run, algo="affine" if folded is not None else "host-stats+affine")
