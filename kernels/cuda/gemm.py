"""Tiled GEMM on the device: matmul, gemm, attention's two products and (through its B-operand modes)
convolution and transposed convolution.

One kernel serves them all: y[z, m, n] = alpha * sum_k A[z, m, k] * B[z, k, n] + beta * C[z, m, n].
A block computes a TILE x TILE tile of y; it walks K a tile at a time, each thread loading one element
of A's and one of B's tile into shared memory, then accumulating its output from them.

Every operand is a flat buffer read at strides: ``(z1, z2, row, col)`` with the batch index z split as
z1 = z // G, z2 = z % G (G = ``dims[3]``). That covers transposes (swapped row/col strides), broadcast
batches and constant weights (stride 0), a matmul batch of two dims, and a conv's (image, group).
B is read in one of three modes (``load_b``): plain strides, the implicit im2col matrix of a
convolution, or its transposed-convolution counterpart; the mode is a kernel argument, uniform over a
launch, so one compiled kernel (cached on disk) serves every caller. A fused epilogue runs after the
GEMM as one generated elementwise launch (``elementwise.with_epilogue``). float32 only.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from ...backend.cuda_registry import lowers
from ...backend.registry import Kernel
from ...errors import UnsupportedError
from ..cpu.codegen import broadcast_strides, coalesce
from .device import SIMULATOR, contiguous_strides, empty, flat, require_float32, static_shape
from .elementwise import with_epilogue

TILE = 8 if SIMULATOR else 16


# how the kernel reads its B operand (``mode``)
STRIDED, IM2COL, COL2IM = range(3)
NO_GEOMETRY = (0,) * 13


@cuda.jit(device=True)
def load_b(mode, b, sb, geo, z1, z2, k, n):
    """B[z, k, n]: of a strided operand (``STRIDED``: ``sb`` its strides, ``geo`` unused), or the implicit
    im2col matrix of image z1, group z2 of an input x [N, C, H, W] for a convolution (``IM2COL``) or a
    transposed convolution (``COL2IM``: the taps of a transposed convolution gathered, no scatter).
    geo = (C, H, W, C/g, kh, kw, sh, sw, dh, dw, pad_top, pad_left, OW); row k runs over (c, u, v) of
    group channel c and kernel tap (u, v), column n over the output positions (oy, ox)."""
    if mode == STRIDED:
        return b[z1 * sb[0] + z2 * sb[1] + k * sb[2] + n * sb[3]]
    c_n, h, w, cg, kh, kw, sh, sw, dh, dw, pt, pl, ow = geo
    c = z2 * cg + k // (kh * kw)
    r = k % (kh * kw)
    oy, ox = n // ow, n % ow
    if mode == IM2COL:
        iy = oy * sh - pt + (r // kw) * dh
        ix = ox * sw - pl + (r % kw) * dw
    else:  # output (oy, ox) takes tap (u, v) of input (iy, ix) where iy * sh + u * dh = oy + pad_top
        ty = oy + pt - (r // kw) * dh
        tx = ox + pl - (r % kw) * dw
        if ty < 0 or tx < 0 or ty % sh != 0 or tx % sw != 0:
            return float32(0)
        iy, ix = ty // sh, tx // sw
    if iy < 0 or iy >= h or ix < 0 or ix >= w:
        return float32(0)
    return b[((z1 * c_n + c) * h + iy) * w + ix]


@cuda.jit(cache=True)
def tiled_gemm(a, sa, mode, b, sb, geo, c, sc, y, sy, dims, alpha, beta):
    """y[z] = alpha * A[z] @ B[z] + beta * C[z], a TILE x TILE output tile per block (z = blockIdx.z,
    split as z1 = z // G, z2 = z % G with G = dims[3]); B is read by ``load_b`` in ``mode``."""
    m_n, n_n, k_n, groups = dims
    z = cuda.blockIdx.z
    z1, z2 = z // groups, z % groups
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    a_tile = cuda.shared.array((TILE, TILE), float32)
    b_tile = cuda.shared.array((TILE, TILE), float32)
    a_base = z1 * sa[0] + z2 * sa[1] + row * sa[2]
    acc = float32(0)
    for k0 in range(0, k_n, TILE):
        ka, kb = k0 + tx, k0 + ty
        a_tile[ty, tx] = a[a_base + ka * sa[3]] if row < m_n and ka < k_n else float32(0)
        b_tile[ty, tx] = load_b(mode, b, sb, geo, z1, z2, kb, col) if kb < k_n and col < n_n else float32(0)
        cuda.syncthreads()
        for q in range(TILE):
            acc += a_tile[ty, q] * b_tile[q, tx]
        cuda.syncthreads()
    if row < m_n and col < n_n:
        v = alpha * acc
        if beta != float32(0):
            v += beta * c[z1 * sc[0] + z2 * sc[1] + row * sc[2] + col * sc[3]]
        y[z1 * sy[0] + z2 * sy[1] + row * sy[2] + col * sy[3]] = v


def run_gemm(a, sa, b, sb, y, sy, m, n, k, batch, groups=1, alpha=1.0, c=None, sc=None, beta=0.0,
             mode=STRIDED, geo=NO_GEOMETRY):
    """Launch the GEMM over ``batch`` = z1 x ``groups`` (flat device buffers; strides as 4-tuples
    (z1, z2, row, col)); B read in ``mode`` with convolution geometry ``geo``."""
    if m == 0 or n == 0 or batch == 0:
        return
    if c is None:
        c, sc, beta = y, (0, 0, 0, 0), 0.0
    grid = (math.ceil(n / TILE), math.ceil(m / TILE), batch)
    tiled_gemm[grid, (TILE, TILE)](a, sa, mode, b, sb, geo, c, sc, y, sy, (m, n, k, groups),
                                   np.float32(alpha), np.float32(beta))


def batch_strides(batch, shapes):
    """The batch dims coalesced to at most two (z1, z2) per operand, as (z1 size, z2 size, strides)."""
    full = [broadcast_strides(s[:-2], batch, contiguous_strides(s)[:-2]) for s in shapes]
    dims, strides = coalesce(batch, full)
    if len(dims) > 2:
        raise UnsupportedError(f"matmul batch {list(batch)} does not fold into two dims")
    pad = 2 - len(dims)
    return ([1] * pad + dims, [[0] * pad + st for st in strides])


@lowers("matmul", family="gemm")
def lower_matmul(node):
    """numpy matmul (1-D operands promoted, batch dims broadcast) as one batched GEMM launch."""
    require_float32(node, *node.inputs, node.outputs[0])
    a_shape, b_shape = static_shape(node.inputs[0], node), static_shape(node.inputs[1], node)
    out_shape = static_shape(node.outputs[0], node)
    a_shape = (1,) + a_shape if len(a_shape) == 1 else a_shape
    b_shape = b_shape + (1,) if len(b_shape) == 1 else b_shape
    m, k, n = a_shape[-2], a_shape[-1], b_shape[-1]
    batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    (g1, g2), (za, zb) = batch_strides(batch, [a_shape, b_shape])
    sa, sb, sy = (*za, k, 1), (*zb, n, 1), (g2 * m * n, m * n, n, 1)

    def run(a, b):
        y = empty(out_shape, np.float32)
        run_gemm(flat(a), sa, flat(b), sb, flat(y), sy, m, n, k, g1 * g2, g2)
        return y
    return Kernel(with_epilogue(node, run, 2), algo="tiled-gemm")


def _matrix_strides(shape, transposed: bool):
    """(row, col) strides of a stored [r, c] matrix read as itself or as its transpose."""
    return (1, shape[1]) if transposed else (shape[1], 1)


@lowers("gemm", family="gemm")
def lower_gemm(node):
    """Y = alpha A' B' + beta C: the transposes are strides, C is the epilogue read at broadcast strides."""
    require_float32(node, *node.inputs, node.outputs[0])
    at = node.attrs
    a_shape, b_shape = static_shape(node.inputs[0], node), static_shape(node.inputs[1], node)
    m, n = static_shape(node.outputs[0], node)
    k = a_shape[0] if at["transA"] else a_shape[1]
    sa = (0, 0, *_matrix_strides(a_shape, at["transA"]))
    sb = (0, 0, *_matrix_strides(b_shape, at["transB"]))
    c_in = node.inputs[2] if len(node.inputs) > 2 else None  # (operands after it: the epilogue's)
    sc = None
    if c_in is not None:
        c_shape = static_shape(c_in, node)
        sc = (0, 0, *broadcast_strides(c_shape, (m, n), contiguous_strides(c_shape)))
    alpha, beta = float(at["alpha"]), float(at["beta"])

    def run(a, b, c=None):
        y = empty((m, n), np.float32)
        run_gemm(flat(a), sa, flat(b), sb, flat(y), (0, 0, n, 1), m, n, k, 1, 1, alpha,
                 None if c is None else flat(c), sc, beta)
        return y
    return Kernel(with_epilogue(node, run, 3), algo="tiled-gemm")
