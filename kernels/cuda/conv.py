"""Convolution on the device: implicit GEMM, its 1x1 special case, a direct depthwise kernel, and the
transposed convolution as an implicit GEMM too.

conv2d picks its algorithm when lowered (``Kernel.algo``):
- ``depthwise`` (one input channel per group): one thread per output element sums its kh*kw window;
  a GEMM with K = kh*kw would waste the tile;
- ``gemm1x1`` (1x1 kernel, stride 1, no padding): each image already is the [C, H*W] B matrix, so the
  tiled GEMM reads it at plain strides;
- ``implicit-gemm`` otherwise: the tiled GEMM with the weights as A ([O/g, C/g*kh*kw] per group, as
  stored) and B = the image's im2col matrix, never materialized: the GEMM's ``IM2COL`` mode computes
  each element from the input (0 in the padding) as the tile is loaded.
conv_transpose2d is the same GEMM with A = the weight [C, O/g, kh, kw] permuted to [g, O/g, C/g*kh*kw]
(once at lowering when it is a constant) and B read in ``COL2IM`` mode: output (oy, ox) takes tap (u, v)
from the input pixel it lands on, where there is one; so every output element is one dot product and
nothing is scattered or accumulated atomically.
The batch of the GEMM runs over (image, group); the bias is the GEMM's C operand, one value per row.
A fused epilogue runs after it (``elementwise.with_epilogue``). There is no Winograd kernel yet: a conv the
winograd pass rewrote runs as implicit GEMM on the weight mapped back from its transform at lowering
(``ops.nn.winograd_unfilter``). float32 only.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

from ...backend.cuda_registry import lowers
from ...backend.registry import Kernel
from ...errors import UnsupportedError
from ...ops.nn import conv_transpose_geometry, resolve_auto_pad, winograd_unfilter
from .device import empty, flat, gather, index_map, launch, require_float32, static_shape, upload
from .elementwise import with_epilogue
from .gemm import COL2IM, IM2COL, NO_GEOMETRY, STRIDED, run_gemm


@cuda.jit(cache=True)
def _depthwise(x, w, b, y, geo, has_bias):
    """y [N, O, OH, OW] of x [N, C, H, W] and w [O, 1, kh, kw], group = O // (O/C) input channel per
    output channel; geo = (C, H, W, O, OH, OW, kh, kw, sh, sw, dh, dw, pad_top, pad_left)."""
    c_n, h, wd, o_n, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl = geo
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < y.shape[0]:
        ox = i % ow
        oy = (i // ow) % oh
        o = (i // (ow * oh)) % o_n
        img = i // (ow * oh * o_n)
        c = o // (o_n // c_n)
        acc = b[o] if has_bias else float32(0)
        for u in range(kh):
            iy = oy * sh - pt + u * dh
            if iy >= 0 and iy < h:
                for v in range(kw):
                    ix = ox * sw - pl + v * dw
                    if ix >= 0 and ix < wd:
                        acc += x[((img * c_n + c) * h + iy) * wd + ix] * w[(o * kh + u) * kw + v]
        y[i] = acc
        i += step


def _weight(node):
    """The [O, C/g, kh, kw] weight uploaded, when the winograd pass replaced it by its transform (which
    these kernels do not use: they map it back), else None (the operand is the weight)."""
    if node.attrs.get("algo") != "winograd":
        return None
    u = node.inputs[1].const_value
    if u is None:
        raise UnsupportedError(f"node conv2d {node.name!r}: a winograd filter must be a constant")
    return upload(winograd_unfilter(u, node.attrs["winograd_m"]).astype(np.float32))


def _geometry(node, weight):
    """(x shape, w shape, y shape, strides, dilations, pads [top, left, bottom, right]) of a conv2d node."""
    x_shape = static_shape(node.inputs[0], node)
    w_shape = static_shape(node.inputs[1], node) if weight is None else tuple(weight.shape)
    y_shape = static_shape(node.outputs[0], node)
    at = node.attrs
    pads = resolve_auto_pad(at["auto_pad"], x_shape[2:], w_shape[2:], at["strides"], at["dilations"], at["pads"])
    return x_shape, w_shape, y_shape, tuple(at["strides"]), tuple(at["dilations"]), tuple(pads)


@lowers("conv2d", family="conv")
def lower_conv2d(node):
    """Depthwise, 1x1 GEMM or implicit GEMM (see the module docstring)."""
    require_float32(node, *node.inputs, node.outputs[0])
    weight = _weight(node)
    (n_img, c_n, h, w), (o_n, cg, kh, kw), y_shape, (sh, sw), (dh, dw), pads = _geometry(node, weight)
    groups = c_n // cg
    oh, ow = y_shape[2], y_shape[3]
    if cg == 1:
        geo = (c_n, h, w, o_n, oh, ow, kh, kw, sh, sw, dh, dw, pads[0], pads[1])

        def depthwise(x, wt, b=None):
            y = empty(y_shape, np.float32)
            if y.size:
                _depthwise[launch(y.size)](flat(x), flat(wt), flat(wt if b is None else b), flat(y), geo,
                                           b is not None)
            return y
        return Kernel(with_epilogue(node, depthwise, 3), algo="depthwise")

    if (kh, kw, sh, sw) == (1, 1, 1, 1) and not any(pads):
        gemm = _grouped_gemm(y_shape, groups, cg, STRIDED, sb=(c_n * h * w, cg * h * w, h * w, 1))
        algo = "gemm1x1"
    else:
        gemm = _grouped_gemm(y_shape, groups, cg * kh * kw, IM2COL,
                             (c_n, h, w, cg, kh, kw, sh, sw, dh, dw, pads[0], pads[1], ow))
        algo = "implicit-gemm"
    return Kernel(with_epilogue(node, lambda x, wt, b=None: gemm(x, wt if weight is None else weight, b), 3),
                  algo=algo)


def _grouped_gemm(y_shape, groups, k, mode, geo=NO_GEOMETRY, sb=(0, 0, 0, 0)):
    """``run(x, a, b=None) -> y``: per image and group, y[img, g] = A[g] @ B[img, g] + bias, with A the
    weight as [g, O/g, k] (contiguous), B read from x in ``mode``, the bias one value per output channel."""
    n_img, o_n, oh, ow = y_shape
    og, p = o_n // groups, oh * ow
    sa, sc, sy = (0, og * k, k, 1), (0, og, 1, 0), (o_n * p, og * p, p, 1)

    def run(x, a, b=None):
        y = empty(y_shape, np.float32)
        run_gemm(flat(a), sa, flat(x), sb, flat(y), sy, og, p, k, n_img * groups, groups, 1.0,
                 None if b is None else flat(b), sc, 1.0, mode, geo)
        return y
    return run


def _transpose_weight_map(w_shape, groups):
    """The gather map taking a transposed convolution's weight [C, O/g, kh, kw] to [g, O/g, C/g * kh * kw]."""
    c_n, og, kh, kw = w_shape
    cg = c_n // groups
    return index_map(w_shape).reshape(groups, cg, og, kh * kw).transpose(0, 2, 1, 3).ravel()


@lowers("conv_transpose2d", family="conv")
def lower_conv_transpose2d(node):
    """Implicit GEMM over the gathered taps (see the module docstring); the weight permuted once at
    lowering when it is a constant, else by one gather per run."""
    require_float32(node, *node.inputs, node.outputs[0])
    x_shape, w_shape = static_shape(node.inputs[0], node), static_shape(node.inputs[1], node)
    y_shape = static_shape(node.outputs[0], node)
    (_, c_n, h, w), (kh, kw) = x_shape, w_shape[2:]
    groups = node.attrs["group"]
    (pt, _), (pl, _) = conv_transpose_geometry(x_shape[2:], w_shape[2:], node.attrs)
    (sh, sw), (dh, dw) = node.attrs["strides"], node.attrs["dilations"]
    cg = c_n // groups
    gemm = _grouped_gemm(y_shape, groups, cg * kh * kw, COL2IM, (c_n, h, w, cg, kh, kw, sh, sw, dh, dw, pt, pl,
                                                                y_shape[3]))
    wmap = _transpose_weight_map(w_shape, groups)
    const = node.inputs[1].const_value
    if const is not None:
        packed = upload(np.asarray(const, np.float32).ravel()[wmap])
        return Kernel(lambda x, _w, b=None: gemm(x, packed, b), algo="implicit-gemm")
    wmap = upload(wmap)
    return Kernel(lambda x, wt, b=None: gemm(x, gather(wt, wmap, (wmap.size,)), b), algo="implicit-gemm")
