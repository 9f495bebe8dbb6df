"""Convolution kernels.

conv2d picks its algorithm when lowered (``Kernel.algo``):
- ``depthwise`` (one input channel per group) and ``grouped-direct`` (up to DIRECT_MAX_GROUP_CHANNELS per
  group): the numba kernel ``direct``, looping over (image, output channel), since im2col + GEMM per group
  would run one tiny GEMM per group;
- ``gemm1x1``: 1x1 kernel, stride 1, no padding: each image already is the [C, H*W] matrix, so one BLAS
  GEMM per image and group;
- ``im2col``: everything else: numba unrolls an image's windows into a [C/group*kh*kw, OH*OW] matrix that
  BLAS multiplies by the [O/group, C/group*kh*kw] weight matrix.
conv_transpose2d is a GEMM (col = W^T x, per image and group) and a col2im scatter-add in numba.

Constant weights are packed once, at lowering. The bias is the accumulator's first value in the numba
kernels and the GEMM epilogue (``gemm.scale_add``) otherwise. float16 is computed in float32; BLAS makes
the float path float32/float64 only (see gemm.py).

Threads: the numba loops that run between BLAS calls (im2col, col2im, direct, the epilogue) are serial, so that
BLAS's threads own the cores; a numba parallel region between two GEMMs would fight BLAS's still-spinning
threads. Inner loops index from 0 (no negative-index fix-up), which lets LLVM vectorize them.
"""
from dataclasses import dataclass

import numpy as np
from numba import njit

from ...backend.registry import Kernel, lowers
from ...ops.nn import conv_transpose_geometry, conv_weight_shape, resolve_auto_pad
from .gemm import add_scaled, compute_dtype, finished, frozen
from .winograd import winograd_conv


# grouped convs with at most this many input channels per group run ``direct``: their per-group GEMMs
# are too small for BLAS to pay (im2col + GEMM measured 2.5-5x slower at 4 and 8 channels per group)
DIRECT_MAX_GROUP_CHANNELS = 8


@njit(cache=True)
def _span(n, stride, offset, size):
    """[lo, hi): the positions p in [0, n) with 0 <= p * stride + offset < size."""
    lo = 0 if offset >= 0 else (stride - 1 - offset) // stride
    hi = min(n, (size - offset + stride - 1) // stride)
    return lo, max(lo, hi)


@njit(cache=True)
def _row_spans(n, kw, stride, dilation, pad, size):
    """Per kernel column j: (first output p, count, input index of p) of the p in [0, n) that read inside
    a row of ``size``."""
    spans = np.empty((kw, 3), np.int64)
    for j in range(kw):
        off = j * dilation - pad
        lo, hi = _span(n, stride, off, size)
        spans[j, 0], spans[j, 1], spans[j, 2] = lo, hi - lo, lo * stride + off
    return spans


@njit(cache=True, fastmath={"contract"})
def _axpy(dst, a, src):
    """dst += a * src over dst's length. Indices run from 0, so numba adds no negative-index fix-up and
    LLVM vectorizes the loop when both views are contiguous."""
    for p in range(dst.shape[0]):
        dst[p] += a * src[p]


@njit(cache=True)
def _accumulate(dst, src):
    """dst += src over dst's length (indices from 0, as in _axpy)."""
    for p in range(dst.shape[0]):
        dst[p] += src[p]


@njit(cache=True)
def im2col(x, col, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow):
    """col[(c*kh + i)*kw + j, y*ow + p] = x[c, y*sh - ph + i*dh, p*sw - pw + j*dw] for the image x [C, H, W];
    0 where that falls outside the image (the padding)."""
    h = x.shape[1]
    spans = _row_spans(ow, kw, sw, dw, pw, x.shape[2])
    for r in range(col.shape[0]):
        c, i, j = r // (kh * kw), (r // kw) % kh, r % kw
        lo, count, start = spans[j, 0], spans[j, 1], spans[j, 2]
        for y in range(oh):
            row = col[r, y * ow:(y + 1) * ow]
            iy = y * sh - ph + i * dh
            if iy < 0 or iy >= h:
                row[:] = 0
                continue
            row[:lo] = 0
            if sw == 1:
                row[lo:lo + count] = x[c, iy, start:start + count]
            else:
                row[lo:lo + count] = x[c, iy, start::sw][:count]
            row[lo + count:] = 0


@njit(cache=True)
def _phase_planes(src, dst, ph, pw):
    """dst[a, b, r, c] = the image src [H, W] zero-padded by ph rows above and pw columns left, at row
    r*sh + a and column c*sw + b (sh, sw = dst's first two sizes): the padded image split by stride phase."""
    sh, sw = dst.shape[0], dst.shape[1]
    h, wd = src.shape
    dst[:] = 0
    if sh == 1 and sw == 1:
        dst[0, 0, ph:ph + h, pw:pw + wd] = src
        return
    for b in range(sw):
        ic0 = (b - pw) % sw
        count = (wd - ic0 + sw - 1) // sw
        c0 = (pw + ic0) // sw
        for ir in range(h):
            row = ph + ir
            dst_row, src_row = dst[row % sh, b, row // sh, c0:c0 + count], src[ir, ic0::sw]
            for k in range(count):
                dst_row[k] = src_row[k]


@njit(cache=True)
def direct(x, w, b, y, sh, sw, dh, dw, ph, pw):
    """y [N, O, OH, OW] = b + the grouped convolution of x [N, C, H, W] with w [O, C/g, kh, kw], computed
    directly (no GEMM), per (image, output channel): for groups of few channels, depthwise above all. Serial
    like the other numba loops here: in MobileNetV2 every depthwise conv sits between two 1x1 GEMMs, and a
    parallel version measured 2-10x slower there (median over runs) as its threads fought BLAS's.

    Every input channel is first zero-padded and split by stride phase (``_phase_planes``) into planes with
    rows ``wq`` wide, so that tap (i, j) of output (yy, p) is element q + (i*dh // sh)*wq + (j*dw // sw) of
    the flat plane of phase ((i*dh) % sh, (j*dw) % sw), with q = yy*wq + p. Each (input channel, tap) is then
    one long contiguous axpy over the whole output, not one short loop per row; the wq - OW columns past
    each output row are computed and dropped."""
    n_img, c_in, h, wd = x.shape
    o_all, cg, kh, kw = w.shape
    og = o_all // (c_in // cg)
    oh, ow = y.shape[2], y.shape[3]
    wq = -(-max(pw + wd, (ow - 1) * sw + (kw - 1) * dw + 1) // sw)
    length = (oh - 1) * wq + ow
    hq = max(-(-(ph + h) // sh), (length - 1 + ((kh - 1) * dh // sh) * wq + (kw - 1) * dw // sw) // wq + 1)
    planes = np.empty((n_img, c_in, sh, sw, hq, wq), x.dtype)
    for t in range(n_img * c_in):
        _phase_planes(x[t // c_in, t % c_in], planes[t // c_in, t % c_in], ph, pw)
    for t in range(n_img * o_all):
        n, o = t // o_all, t % o_all
        acc = np.empty(length, y.dtype)
        acc[:] = b[o]
        for ci in range(cg):
            phases = planes[n, (o // og) * cg + ci]
            for i in range(kh):
                for j in range(kw):
                    flat = phases[(i * dh) % sh, (j * dw) % sw].ravel()
                    off = (i * dh // sh) * wq + j * dw // sw
                    _axpy(acc, w[o, ci, i, j], flat[off:off + length])
        for yy in range(oh):
            y[n, o, yy, :] = acc[yy * wq:yy * wq + ow]


@njit(cache=True)
def col2im(col, b, y, h, w, kh, kw, sh, sw, dh, dw, ph, pw):
    """y [C, OH, OW] = b[c] + the scatter-add of col [C*kh*kw, h*w]: col[(c*kh + i)*kw + j, iy*w + ix] lands
    on y[c, iy*sh - ph + i*dh, ix*sw - pw + j*dw] when that is inside y (the adjoint of im2col)."""
    oh = y.shape[1]
    spans = _row_spans(w, kw, sw, dw, pw, y.shape[2])
    for c in range(y.shape[0]):
        y[c, :, :] = b[c]
        for i in range(kh):
            for iy in range(h):
                oy = iy * sh - ph + i * dh
                if oy < 0 or oy >= oh:
                    continue
                for j in range(kw):
                    lo, count, start = spans[j, 0], spans[j, 1], spans[j, 2]
                    src = col[(c * kh + i) * kw + j, iy * w + lo:iy * w + lo + count]
                    if sw == 1:
                        _accumulate(y[c, oy, start:start + count], src)
                    else:
                        _accumulate(y[c, oy, start::sw][:count], src)


@dataclass(frozen=True)
class Geometry:
    """Static sizes of a (transposed) convolution: x [n, c, h, w] -> y [n, o, oh, ow], c and o in groups."""
    n: int
    c: int
    h: int
    w: int
    o: int
    oh: int
    ow: int
    group: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    ph: int     # padding before the first row / column
    pw: int

    @property
    def cg(self):
        return self.c // self.group

    @property
    def og(self):
        return self.o // self.group

    def window(self):
        """The kernel, stride, dilation and leading-pad scalars the numba kernels take."""
        return self.kh, self.kw, self.sh, self.sw, self.dh, self.dw, self.ph, self.pw


def _geometry(node, kernel, pads_begin) -> Geometry:
    x, y, a = node.inputs[0].type.shape, node.outputs[0].type.shape, node.attrs
    return Geometry(*x, y[1], y[2], y[3], a["group"], *kernel, *a["strides"], *a["dilations"], *pads_begin)


def _packed(node, pack, dtype):
    """``fn(w)`` giving the packed weight: packed once here when the weight is a constant."""
    def fn(w):
        return frozen(pack(w), dtype)
    w = node.inputs[1].const_value
    if w is None:
        return fn
    packed = fn(w)
    return lambda _: packed


def _bias(b, channels, dtype):
    return frozen(np.zeros(channels, dtype) if b is None else b, dtype)


def _conv_gemm(g: Geometry, weight, dtype, columns):
    """conv2d as per-image, per-group GEMMs of the [O/g, K] weight blocks with ``columns(image, col)``, the
    [K, OH*OW] matrix of one group of one image; bias in the epilogue."""
    k = g.cg * g.kh * g.kw

    def run(x, w, b=None):
        x = frozen(x, dtype)
        wk = weight(w)
        y = np.empty((g.n, g.o, g.oh * g.ow), dtype)
        col = np.empty((k, g.oh * g.ow), dtype)
        for n in range(g.n):
            for gi in range(g.group):
                np.dot(wk[gi], columns(x[n, gi * g.cg:(gi + 1) * g.cg], col),
                       out=y[n, gi * g.og:(gi + 1) * g.og])
        if b is not None:
            add_scaled(y, 1.0, 1.0, b.reshape(g.o, 1))
        return y.reshape(g.n, g.o, g.oh, g.ow)
    return run


def _im2col(g: Geometry, xg, col):
    im2col(xg, col, *g.window(), g.oh, g.ow)
    return col


def _conv_direct(g: Geometry, weight, dtype):
    def run(x, w, b=None):
        y = np.empty((g.n, g.o, g.oh, g.ow), dtype)
        direct(frozen(x, dtype), weight(w), _bias(b, g.o, dtype), y, g.sh, g.sw, g.dh, g.dw, g.ph, g.pw)
        return y
    return run


def _with_result_dtype(node, run):
    dt = node.outputs[0].type.numpy_dtype
    return lambda *args: run(*args).astype(dt, copy=False)


def _conv2d_run(node, g: Geometry, pads, dtype):
    """(algorithm, run(x, w, b)) for a conv2d: the node's ``algo`` (winograd, depthwise) when it names one,
    else by its geometry (see the module docstring)."""
    if node.attrs.get("algo") == "winograd":
        return "winograd", winograd_conv(g, node.attrs["winograd_m"], dtype)
    if node.attrs.get("algo") == "depthwise" or (g.group > 1 and g.cg <= DIRECT_MAX_GROUP_CHANNELS):
        run = _conv_direct(g, _packed(node, lambda w: w, dtype), dtype)
        return ("depthwise" if g.cg == 1 else "grouped-direct"), run
    weight = _packed(node, lambda w: w.reshape(g.group, g.og, g.cg * g.kh * g.kw), dtype)
    if (g.kh, g.kw, g.sh, g.sw) == (1, 1, 1, 1) and not any(pads):
        return "gemm1x1", _conv_gemm(g, weight, dtype, lambda xg, _: xg.reshape(g.cg, g.h * g.w))
    return "im2col", _conv_gemm(g, weight, dtype, lambda xg, col: _im2col(g, xg, col))


@lowers("conv2d", family="conv")
def lower_conv2d(node):
    """conv2d: winograd, depthwise / grouped-direct, gemm1x1 or im2col, then the fused epilogue."""
    x, a = node.inputs[0].type.shape, node.attrs
    w = conv_weight_shape(node.inputs[1].type.shape, a)
    pads = resolve_auto_pad(a["auto_pad"], x[2:], w[2:], a["strides"], a["dilations"], a["pads"])
    g = _geometry(node, w[2:], pads[:2])
    algo, run = _conv2d_run(node, g, pads, compute_dtype(node))
    return Kernel(finished(node, run, 3), algo=algo)


@lowers("conv_transpose2d", family="conv")
def lower_conv_transpose2d(node):
    """conv_transpose2d: per image and group, col = W_g^T x_g (BLAS) then col2im (numba), bias as the start."""
    x, w = node.inputs[0].type.shape, node.inputs[1].type.shape
    (ph, _), (pw, _) = conv_transpose_geometry(x[2:], w[2:], node.attrs)
    g = _geometry(node, w[2:], (ph, pw))
    dtype = compute_dtype(node)
    # W [C, O/g, kh, kw] -> per group the [O/g*kh*kw, C/g] matrix W_g^T
    weight = _packed(node, lambda w: w.reshape(g.group, g.cg, g.og * g.kh * g.kw).transpose(0, 2, 1), dtype)

    def run(x, w, b=None):
        x = frozen(x, dtype).reshape(g.n, g.c, g.h * g.w)
        wt, bias = weight(w), _bias(b, g.o, dtype)
        y = np.empty((g.n, g.o, g.oh, g.ow), dtype)
        col = np.empty((wt.shape[1], g.h * g.w), dtype)
        for n in range(g.n):
            for gi in range(g.group):
                np.dot(wt[gi], x[n, gi * g.cg:(gi + 1) * g.cg], out=col)
                outs = slice(gi * g.og, (gi + 1) * g.og)
                col2im(col, bias[outs], y[n, outs], g.h, g.w, *g.window())
        return y
    return Kernel(_with_result_dtype(node, run), algo="gemm-col2im")
