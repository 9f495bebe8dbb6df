"""Pooling on the device: window max/average pooling and global pooling.

Window pooling runs one thread per output element over its (dilated) window; a 1-D pool is the 2-D
kernel on a height-1 image, as on the CPU. Global pooling runs one thread per (image, channel) row,
summing in float64. Max keeps NaN (a NaN tap wins). float32 only.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64

from ...backend.cuda_registry import lowers
from ...backend.registry import Kernel
from ...errors import UnsupportedError
from ...ops.pool import height_one_attrs, pool_geometry
from .device import empty, flat, launch, require_float32, static_shape


@cuda.jit(device=True)
def _taps(start, k, d, size, pad_end):
    """Of taps start + i*d (i < k): the first and last+1 inside [0, size), and the count inside the
    input padded at its end by ``pad_end``."""
    lo = 0 if start >= 0 else (-start + d - 1) // d
    hi = min(k, (size - 1 - start) // d + 1) if start < size else 0
    padded = min(k, (size + pad_end - 1 - start) // d + 1)
    return lo, max(hi, lo), padded


@cuda.jit(cache=True)
def _pool2d(x, y, geo, is_max, count_include_pad):
    """y [R, OH, OW] = max or mean of x [R, H, W] over each window; geo = (H, W, OH, OW, kh, kw, sh, sw,
    dh, dw, pad_top, pad_left, pad_bottom, pad_right)."""
    h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr = geo
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < y.shape[0]:
        ox, oy, r = i % ow, (i // ow) % oh, i // (ow * oh)
        ys, xs = oy * sh - pt, ox * sw - pl
        ilo, ihi, hpad = _taps(ys, kh, dh, h, pb)
        jlo, jhi, wpad = _taps(xs, kw, dw, w, pr)
        acc = -math.inf if is_max else float32(0)
        for u in range(ilo, ihi):
            row = (r * h + ys + u * dh) * w + xs
            for v in range(jlo, jhi):
                t = x[row + v * dw]
                if is_max:
                    acc = t if (t > acc or t != t) else acc
                else:
                    acc += t
        if is_max:
            y[i] = acc
        else:
            n = hpad * wpad if count_include_pad else (ihi - ilo) * (jhi - jlo)
            y[i] = acc / max(n, 1)
        i += step


@cuda.jit(cache=True)
def _global_pool(x, y, size, is_max):
    """y[r] = max or mean of the row x[r * size:(r + 1) * size]."""
    r = cuda.grid(1)
    step = cuda.gridsize(1)
    while r < y.shape[0]:
        acc = -math.inf if is_max else float64(0)
        for j in range(r * size, (r + 1) * size):
            t = x[j]
            if is_max:
                acc = t if (t > acc or t != t) else acc
            else:
                acc += t
        y[r] = acc if is_max else acc / size
        r += step


def _as_2d(spatial, attrs):
    """A 1-D pool's spatial dims and attributes as those of a height-1 image; 2-D ones as they are."""
    if len(spatial) == 2:
        return spatial, attrs
    if len(spatial) != 1:
        raise UnsupportedError(f"{len(spatial)}-D pooling has no CUDA kernel")
    return (1,) + tuple(spatial), height_one_attrs(attrs)


@lowers("maxpool", "avgpool", family="pool")
def lower_pool(node):
    """maxpool/avgpool: one thread per output over its window (1-D pools as height-1 images)."""
    require_float32(node, node.inputs[0], *node.outputs)
    if len(node.outputs) > 1:
        raise UnsupportedError(f"node {node.name!r}: maxpool indices have no CUDA kernel")
    x_shape, y_shape = static_shape(node.inputs[0], node), static_shape(node.outputs[0], node)
    spatial, attrs = _as_2d(x_shape[2:], node.attrs)
    g = pool_geometry(spatial, attrs)
    oh, ow = g.out if len(g.out) == 2 else (1, g.out[0])
    geo = (*spatial, oh, ow, *g.kernel, *g.strides, *g.dilations, g.pads[0], g.pads[1], g.pads[2], g.pads[3])
    is_max, cip = node.op == "maxpool", bool(node.attrs.get("count_include_pad", 0))

    def run(x):
        y = empty(y_shape, np.float32)
        if y.size:
            _pool2d[launch(y.size)](flat(x), flat(y), geo, is_max, cip)
        return y
    return Kernel(run, algo="window")


@lowers("global_avgpool", "global_maxpool", family="pool")
def lower_global_pool(node):
    """global_avgpool/global_maxpool: one thread per (image, channel) over its spatial dims."""
    require_float32(node, node.inputs[0], node.outputs[0])
    x_shape, y_shape = static_shape(node.inputs[0], node), static_shape(node.outputs[0], node)
    size, is_max = math.prod(x_shape[2:]), node.op == "global_maxpool"

    def run(x):
        y = empty(y_shape, np.float32)
        if y.size:
            _global_pool[launch(y.size)](flat(x), flat(y), size, is_max)
        return y
    return Kernel(run, algo="rows")
