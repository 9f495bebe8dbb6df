"""Normalizations on the device: softmax, layernorm, instance and group norm, batchnorm, LRN.

softmax and the statistics of layernorm/instance norm/group norm run one thread per row (the row read at
a stride for softmax over a middle axis), in float64: max, sum of exp shifted by it, write (softmax);
mean, then variance from the centered values, then the normalized row (norms). The three norms differ
only in what a row is and which scale/bias entry each of its elements takes (``_normalize``).
batchnorm is the per-channel affine x * a + b with a, b folded on the host at lowering when the
statistics are constants (as they are after import), else computed on the host per run from the
downloaded parameters. LRN runs one thread per element over its window of channels. float32 only.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ...backend.cuda_registry import lowers
from ...backend.registry import Kernel
from ...ops.tensor import norm_axis
from .device import broadcast_param, download, empty, flat, launch, require_float32, static_shape, upload


@cuda.jit(cache=True)
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


@cuda.jit(cache=True)
def _normalize(x, scale, bias, y, mean, invstd, n, groups, per_group, spatial, eps, has_bias):
    """Rows of x [R, n] normalized to zero mean and unit variance, then * scale + bias, element j of row
    r taking entry (r % groups) * per_group + j // spatial: the position in the row for layernorm
    (groups = 1, spatial = 1), the row's channel for instance norm (groups = channels, spatial = n), the
    element's channel for group norm. mean and invstd get each row's statistics."""
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
            p = (r % groups) * per_group + j // spatial
            v = (x[base + j] - mu) * inv * scale[p]
            y[base + j] = v + bias[p] if has_bias else v
        r += step


@cuda.jit(cache=True)
def _affine_channels(x, a, b, y, spatial, channels):
    """y[i] = x[i] * a[c] + b[c] with c = (i // spatial) % channels."""
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < y.shape[0]:
        c = (i // spatial) % channels
        y[i] = x[i] * a[c] + b[c]
        i += step


@cuda.jit(cache=True)
def _lrn(x, y, channels, spatial, size, alpha, beta, bias):
    """y = x / (bias + alpha / size * sum of x^2 over channels c - (size - 1) // 2 .. c + size // 2,
    clipped to [0, channels)) ** beta, for x [N, C, spatial]."""
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    lo = (size - 1) // 2
    while i < y.shape[0]:
        c = (i // spatial) % channels
        base = i - c * spatial
        s = float64(0)
        for q in range(max(0, c - lo), min(channels, c - lo + size)):
            v = float64(x[base + q * spatial])
            s += v * v
        y[i] = x[i] / (bias + alpha / size * s) ** beta
        i += step


@lowers("lrn", family="norm")
def lower_lrn(node):
    """LRN: one thread per element over its window of neighbouring channels."""
    require_float32(node, node.inputs[0], node.outputs[0])
    shape = static_shape(node.inputs[0], node)
    at = node.attrs
    args = (shape[1], math.prod(shape[2:]), int(at["size"]), float(at["alpha"]), float(at["beta"]),
            float(at["bias"]))

    def run(x):
        y = empty(shape, np.float32)
        if y.size:
            _lrn[launch(y.size)](flat(x), flat(y), *args)
        return y
    return Kernel(run, algo="window")


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


def _normalize_rows(x, scale, bias, rows, n, eps, groups=1, per_group=0, spatial=1):
    """(y, mean, invstd) of ``_normalize`` over x seen as [rows, n]; mean and invstd are [rows]."""
    y, mean, inv = empty(x.shape, np.float32), empty((rows,), np.float32), empty((rows,), np.float32)
    if rows and n:
        _normalize[launch(rows)](flat(x), flat(scale), flat(scale if bias is None else bias), flat(y), mean, inv,
                                 n, groups, per_group, spatial, eps, bias is not None)
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
        y, mean, inv = _normalize_rows(x, broadcast_param(scale, row), bias, math.prod(shape[:a]), n, eps)
        return y, mean.reshape(stats), inv.reshape(stats)
    return Kernel(run, algo="rows")


@lowers("instance_norm", "group_norm", family="norm")
def lower_channel_norm(node):
    """Rows of (image, channel group) over the group's channels and the spatial dims (one channel a
    group for instance norm); scale and bias per channel."""
    require_float32(node, *node.inputs, node.outputs[0])
    shape = static_shape(node.inputs[0], node)
    eps, channels, spatial = float(node.attrs["epsilon"]), shape[1], math.prod(shape[2:])
    groups = node.attrs["num_groups"] if node.op == "group_norm" else channels
    per_group = channels // groups

    def run(x, scale, bias):
        return _normalize_rows(x, scale, bias, shape[0] * groups, per_group * spatial, eps, groups, per_group,
                               spatial)[0]
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
