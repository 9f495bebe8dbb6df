"""Convolution kernels.

conv2d picks its algorithm when lowered (``Kernel.algo``):
- ``depthwise`` (one input channel per group) and ``grouped-direct`` (up to DIRECT_MAX_GROUP_CHANNELS per
  group): ``depthwise.grouped_direct``, in parallel over (image, group), since im2col + GEMM per group
  would run one tiny GEMM per group;
- ``winograd``: the Winograd form the winograd pass gave the node (see winograd.py);
- ``pixel-gemm``: 1x1 kernel of 1x1 images (squeeze-excite gates): one fused GEMM of the [N, C] pixels by
  the transposed weight;
- ``gemm1x1``: 1x1 kernel, stride 1, no padding: each image already is the [C, H*W] matrix the weight
  multiplies, read in place;
- ``im2col``: everything else: the input is split once into zero-padded stride-phase planes, and each task
  unrolls its block of output pixels into a [C/group*kh*kw, block] matrix that BLAS multiplies by the
  [O/group, C/group*kh*kw] weight matrix (see ``gemm_conv``); an image of few output pixels is unrolled
  once by all workers and its output channels split instead, so each worker streams only its rows of a
  big weight; a strided 1x1 conv without padding reads its input subsampled instead (one copy of the
  pixels it reads).
A lone relu or clip in a conv2d's fused epilogue is applied by the kernel as it stores (``clamp_epilogue``);
other epilogues run after it, in place. The GEMM forms and conv_transpose2d adopt the output-buffer
protocol (``Kernel.into``): they write straight into the result's slice of the plan's arena.
conv_transpose2d is a GEMM (col = W^T x) and a col2im scatter-add, per block of output channels.

Threads: numba's pool is the only one (BLAS's own is held at one thread while irc runs, see blas.py). The
GEMM kernels cut the result into tasks (``_gemm_blocks``), a few per worker, and every worker runs
``blas.gemm`` on its own task with the unrolling and the bias next to it, so each task's data stays in its
core's cache. Constant weights are packed once, at lowering. float16 is computed in float32; BLAS makes the
float path float32/float64 only (see gemm.py). Inner loops index from 0 (no negative-index fix-up), which
lets LLVM vectorize them.
"""
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

from ...backend.registry import Kernel, lowers
from ...ops.nn import conv_transpose_geometry, conv_weight_shape, resolve_auto_pad
from ...runtime.threads import current as current_threads
from .blas import gemm
from .depthwise import clamp_epilogue, direct_run, pack_taps
from .elementwise import elementwise_kernel
from .gemm import compute_dtype, epilogue_tree, finished, finished_into, frozen, gemm_fused
from .scratch import scratch
from .winograd import phase_planes, winograd_conv


# grouped convs with at most this many input channels per group run ``grouped_direct``: their per-group
# GEMMs are too small for BLAS to pay (im2col + GEMM measured 2.5-5x slower at 4 and 8 channels per group)
DIRECT_MAX_GROUP_CHANNELS = 8
# unrolled input per GEMM task: the [K, cols] block stays in the core's L2 (1-2 MiB) next to BLAS's packed
# panels
SCRATCH_BYTES = 256 << 10
# output pixels per GEMM task at least: each task reads its whole block of weights, and BLAS runs narrower
# products slower (a 7x7 stride-2 stem and a 3x3 stride-2 conv at 28x28 measured 10-20% faster than at 96)
MIN_COLS = 384
MIN_ROWS = 16   # output channels per GEMM task at least, where they are split


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


@njit(cache=True)
def _accumulate(dst, src):
    """dst += src over dst's length. Indices run from 0, so numba adds no negative-index fix-up and LLVM
    vectorizes the loop when both views are contiguous."""
    for p in range(dst.shape[0]):
        dst[p] += src[p]


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


@njit(cache=True)
def _unroll(planes, col, r0, r1, width, kh, kw, sh, sw, dh, dw, wq, ow, p0):
    """col[r, q] for r0 <= r < r1 (r = (c*kh + i)*kw + j), q < width: tap (i, j) of channel c at output pixel
    p0 + q, read from the image's stride-phase planes [C, sh*sw, hq*wq] (see winograd.split_phases): output
    (oy, ox) reads element oy*wq + ox + (i*dh // sh)*wq + j*dw // sw of the phase plane ((i*dh) % sh,
    (j*dw) % sw), so every run of an output row is one contiguous copy, borders included (the padding is in
    the planes). col is a whole C-contiguous [K, cols] scratch (a column slice of it would make LLVM
    scatter the stores)."""
    for r in range(r0, r1):
        c, i, j = r // (kh * kw), (r // kw) % kh, r % kw
        plane = planes[c, ((i * dh) % sh) * sw + (j * dw) % sw]
        off = ((i * dh) // sh) * wq + (j * dw) // sw
        row = col[r]
        q, oy, ox = 0, p0 // ow, p0 % ow
        while q < width:
            count = min(ow - ox, width - q)
            dst, src = row[q:q + count], plane[oy * wq + ox + off:]
            for e in range(count):
                dst[e] = src[e]
            q, oy, ox = q + count, oy + 1, 0


@njit(cache=True)
def _product(weight, col, y, o0, p0, b, lo, hi):
    """y[o0:, p0:] (the block weight @ col of y [O, P]) = clip(weight @ col + b[o], lo, hi): the
    single-threaded BLAS product, then the bias (and a fused relu or clip) while the block is in cache.
    The epilogue walks rows y[o][p0:p1], which numba knows are contiguous (so LLVM vectorizes them; a row
    of the 2-D block view would be strided)."""
    p1 = p0 + col.shape[1]
    gemm(weight, col, y[o0:o0 + weight.shape[0], p0:p1], 0.0)
    for o in range(o0, o0 + weight.shape[0]):
        row, bias = y[o][p0:p1], b[o]
        for p in range(p1 - p0):
            row[p] = min(max(row[p] + bias, lo), hi)


@njit(cache=True)
def _task_block(task, groups, og, n_cols, n_rows, cols, rows, p_all):
    """(image, group, first pixel, end pixel, first channel, end channel) of ``gemm_conv``'s task number
    ``task``: tasks run over (image, group), then column blocks, then row blocks of the group's og
    channels."""
    u = task // (n_cols * n_rows)
    p0, o0 = ((task // n_rows) % n_cols) * cols, (task % n_rows) * rows + (u % groups) * og
    return u // groups, u % groups, p0, min(p_all, p0 + cols), o0, min((u % groups + 1) * og, o0 + rows)


@njit(cache=True, parallel=True)
def gemm_conv(src, w, b, lo, hi, y, col, kh, kw, sh, sw, dh, dw, wq, ow, cols, rows, shared, threads):
    """y [N, O, P] = clip(b + the convolution, lo, hi) as GEMMs, P = OH*OW: the weight w [G, O/G, K]
    (K = C/G*kh*kw) times the unrolled input of each (image, group) "unit", read from src
    [N, C, sh*sw, hq*wq] (the stride-phase planes, or a plain 1x1 conv's input as [N, C, 1, H*W], which
    is its unrolled input already: read in place). The work is cut into tasks of ``cols`` output pixels
    by ``rows`` output channels (``_product`` each). Per-task unrolling (``shared`` false, kh*kw > 1):
    the tasks are dealt round-robin to ``threads`` workers, and each unrolls its block of pixels into its
    worker's scratch col[worker] ([threads, K, cols]), so the block stays in that core's cache; tasks
    without unrolling are left to numba's scheduler, which rebalances them when a core is busy.
    ``shared``: one column block per unit, its channels split (a few output pixels times a big weight:
    each worker then streams its own rows of the weight once); every unit is unrolled once, by all workers
    together, into col[unit] ([units, K, P]), then the products run."""
    n_img, c_all = src.shape[0], src.shape[1]
    groups, og, k = w.shape
    cg, p_all, units = c_all // groups, y.shape[2], n_img * groups
    n_cols, n_rows = -(-p_all // cols), -(-og // rows)
    copy = kh * kw > 1
    if shared and copy:
        chunk = -(-k // threads)
        for t in prange(threads):
            for u in range(units):
                n, gi = u // groups, u % groups
                _unroll(src[n, gi * cg:(gi + 1) * cg], col[u], min(k, t * chunk), min(k, (t + 1) * chunk),
                        p_all, kh, kw, sh, sw, dh, dw, wq, ow, 0)
    tasks = units * n_cols * n_rows
    if shared or not copy:  # the tasks need no scratch of their own: numba's scheduler deals them out
        for task in prange(tasks):
            n, gi, p0, p1, o0, o1 = _task_block(task, groups, og, n_cols, n_rows, cols, rows, p_all)
            weight = w[gi, o0 - gi * og:o1 - gi * og]
            if copy:
                _product(weight, col[n * groups + gi], y[n], o0, p0, b, lo, hi)
            else:
                _product(weight, src[n, gi * cg:(gi + 1) * cg, 0, p0:p1], y[n], o0, p0, b, lo, hi)
        return
    for t in prange(threads):
        for task in range(t, tasks, threads):
            n, gi, p0, p1, o0, o1 = _task_block(task, groups, og, n_cols, n_rows, cols, rows, p_all)
            _unroll(src[n, gi * cg:(gi + 1) * cg], col[t], 0, k, p1 - p0, kh, kw, sh, sw, dh, dw, wq, ow, p0)
            _product(w[gi, o0 - gi * og:o1 - gi * og], col[t, :, :p1 - p0], y[n], o0, p0, b, lo, hi)


@njit(cache=True, parallel=True)
def gemm_col2im(x, wt, b, y, col, w_in, kh, kw, sh, sw, dh, dw, ph, pw, rows, threads):
    """y [N, O, OH, OW] = b + the transposed convolution of x [N, C, H*W] (H*W = rows of width w_in) by
    wt [G, O/G*kh*kw, C/G] (W^T per group): per task of ``rows`` output channels of one (image, group),
    col = W^T x by single-threaded BLAS into the worker's scratch col[worker] ([threads, rows*kh*kw, H*W]),
    then ``col2im`` onto those channels only, so no two workers write the same output."""
    n_img, c_all, hw = x.shape
    groups, o_all = wt.shape[0], y.shape[1]
    cg, og = c_all // groups, o_all // groups
    n_rows = -(-og // rows)
    tasks = n_img * groups * n_rows
    for t in prange(threads):
        for task in range(t, tasks, threads):
            n, gi, o0 = task // (groups * n_rows), (task // n_rows) % groups, (task % n_rows) * rows
            o1 = min(og, o0 + rows)
            block = col[t, :(o1 - o0) * kh * kw]
            gemm(wt[gi, o0 * kh * kw:o1 * kh * kw], x[n, gi * cg:(gi + 1) * cg], block, 0.0)
            lo, hi = gi * og + o0, gi * og + o1
            col2im(block, b[lo:hi], y[n, lo:hi], hw // w_in, w_in, kh, kw, sh, sw, dh, dw, ph, pw)


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


def _balanced(count, units, threads, most):
    """A task count per unit near ``count`` (at least 1, at most ``most``) that makes the total number of
    tasks, units * count, a multiple of ``threads`` where it can, so that the workers finish together."""
    count = max(1, min(count, most))
    fair = -(-count * units // threads) * threads
    return count if fair % units else min(most, fair // units)


def _gemm_blocks(g: Geometry, k: int, itemsize: int, threads: int):
    """(cols, rows, shared): the output pixels and output channels per task of ``gemm_conv``, and whether
    its units are unrolled once and shared by their tasks. A task's unrolled input and result ([k + O/g,
    cols]) are about SCRATCH_BYTES, but at least MIN_COLS wide, since every task reads its whole block of
    weights: as many column blocks as keep the workers evenly loaded. Where an image has too few pixels to
    give every worker a block, the output channels are split instead (each worker then reads only its
    rows of the weight), and an image of one column block is unrolled once for all of them."""
    p, units = max(1, g.oh * g.ow), max(1, g.n * g.group)  # (an empty batch runs no task)
    n_cols = max(1, min(round(p * (k + g.og) * itemsize / SCRATCH_BYTES), p // MIN_COLS))
    if units * n_cols >= threads:
        return -(-p // _balanced(n_cols, units, threads, max(1, p // MIN_COLS))), g.og, False
    n_rows = max(1, min(-(-threads // (units * n_cols)), g.og // MIN_ROWS))
    return -(-p // n_cols), -(-g.og // n_rows), n_cols == 1 and n_rows > 1


class GemmConv:
    """conv2d as GEMMs of the [O/g, K] weight blocks and the unrolled input (``gemm_conv``), read from the
    stride-phase planes of the padded input, or for a ``pointwise`` conv (1x1, no padding) from the input
    itself (subsampled by a stride: a copy of only the pixels read); the result clipped to ``bounds``.
    Called as ``run(x, w, b)``, or ``into(out, x, w, b)`` writing the [N, O, OH, OW] result of
    the compute dtype into ``out`` (the output-buffer protocol)."""

    def __init__(self, node, g: Geometry, dtype, pointwise: bool, bounds):
        self.g, self.dtype, self.pointwise = g, np.dtype(dtype), pointwise
        self.k = g.cg * g.kh * g.kw
        self.lo, self.hi = (self.dtype.type(v) for v in bounds)
        self.weight = _packed(node, lambda w: w.reshape(g.group, g.og, self.k), dtype)
        self.hq = max(-(-(g.ph + g.h) // g.sh), g.oh + ((g.kh - 1) * g.dh) // g.sh)
        self.wq = g.ow if pointwise else max(-(-(g.pw + g.w) // g.sw), g.ow + ((g.kw - 1) * g.dw) // g.sw)
        self.blocks = {}    # thread count -> (cols, rows, shared, scratch shape)

    def _tasks(self, threads: int):
        """(cols, rows, shared, scratch shape) of ``gemm_conv`` on ``threads`` workers (memoized)."""
        found = self.blocks.get(threads)
        if found is None:
            g = self.g
            cols, rows, shared = _gemm_blocks(g, self.k, self.dtype.itemsize, threads)
            k = self.k if g.kh * g.kw > 1 else 0
            shape = (g.n * g.group, k, g.oh * g.ow) if shared else (threads, k, cols)
            found = self.blocks[threads] = cols, rows, shared, shape
        return found

    def _source(self, x):
        """What ``gemm_conv`` reads from x (of the compute dtype): the phase planes, or a pointwise conv's
        input (in place), subsampled into the thread's scratch when strided."""
        g = self.g
        if self.pointwise and (g.sh, g.sw) == (1, 1):
            return x.reshape(g.n, g.c, 1, g.oh * g.ow)
        if self.pointwise:
            src = scratch("subsampled", (g.n, g.c, g.oh, g.ow), self.dtype)
            src[...] = x[:, :, ::g.sh, ::g.sw]
            src.flags.writeable = False
            return src.reshape(g.n, g.c, 1, g.oh * g.ow)
        return phase_planes(x, g.ph, g.pw, g.sh, g.sw, self.hq, self.wq)

    def bind(self, out, x, w, b=None):
        """``(call, ())`` writing the conv of x by w (+ b), clipped, into ``out`` for arrays that stay where
        they are: the operands converted, the weight packed and the tasks planned once; each call only
        fetches the thread's scratch and runs the kernels."""
        g, threads = self.g, current_threads()
        cols, rows, shared, shape = self._tasks(threads)
        x = frozen(x, self.dtype)
        head = (self.weight(w), _bias(b, g.o, self.dtype), self.lo, self.hi, out.reshape(g.n, g.o, g.oh * g.ow))
        tail = (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, self.wq, g.ow, cols, rows, shared, threads)

        def call():
            gemm_conv(self._source(x), *head, scratch("col", shape, self.dtype), *tail)
        return call, ()

    def into(self, out, x, w, b=None):
        """Write the conv of x by w (+ b), clipped, into ``out``."""
        self.bind(out, x, w, b)[0]()

    def __call__(self, x, w, b=None):
        g = self.g
        y = np.empty((g.n, g.o, g.oh, g.ow), self.dtype)
        self.into(y, x, w, b)
        return y


class PixelConv:
    """A 1x1 conv of 1x1 images (a squeeze-excite gate): y [N, O] = x [N, C] W^T + b, clipped to ``bounds``,
    as one fused GEMM (a matrix-vector product for one image), the weight transposed once. The general GEMM
    conv's task planning, scratch and parallel launch cost more than such a product (15-25 us per gate of
    a squeeze-excite net, measured). ``run``/``into``/``bind`` as ``GemmConv``."""

    def __init__(self, node, g: Geometry, dtype, bounds):
        self.g, self.dtype = g, np.dtype(dtype)
        self.lo, self.hi = (self.dtype.type(v) for v in bounds)
        self.weight = _packed(node, lambda w: w.reshape(g.o, g.c).T, dtype)

    def bind(self, out, x, w, b=None):
        g, one = self.g, self.dtype.type(1)
        x, w, b = frozen(x, self.dtype).reshape(g.n, g.c), self.weight(w), _bias(b, g.o, self.dtype)
        y = out.reshape(g.n, g.o)
        return (lambda: gemm_fused(x, w, y, 0.0, current_threads(), b, self.lo, self.hi, one)), ()

    def into(self, out, x, w, b=None):
        self.bind(out, x, w, b)[0]()

    def __call__(self, x, w, b=None):
        g = self.g
        y = np.empty((g.n, g.o, 1, 1), self.dtype)
        self.into(y, x, w, b)
        return y


def _with_result_dtype(node, run):
    dt = node.outputs[0].type.numpy_dtype
    return lambda *args: run(*args).astype(dt, copy=False)


def _conv2d_run(node, g: Geometry, pads, dtype, threads, bounds):
    """(algorithm, run(x, w, b)) for a conv2d: the node's ``algo`` (winograd, depthwise) when it names one,
    else by its geometry (see the module docstring); the result clipped to ``bounds`` (lo, hi)."""
    if node.attrs.get("algo") == "winograd":
        return "winograd", winograd_conv(g, node.attrs["winograd_m"], dtype, bounds)
    if node.attrs.get("algo") == "depthwise" or (g.group > 1 and g.cg <= DIRECT_MAX_GROUP_CHANNELS):
        run = direct_run(g, _packed(node, pack_taps, dtype), lambda b: _bias(b, g.o, dtype), dtype, threads, bounds)
        return ("depthwise" if g.cg == 1 else "grouped-direct"), run
    pointwise = (g.kh, g.kw) == (1, 1) and not any(pads)
    if pointwise and g.group == 1 and (g.h, g.w) == (1, 1):
        return "pixel-gemm", PixelConv(node, g, dtype, bounds)
    plain = pointwise and (g.sh, g.sw) == (1, 1)
    return ("gemm1x1" if plain else "im2col"), GemmConv(node, g, dtype, pointwise, bounds)


def _buffer_protocol(node, run, clamped) -> dict:
    """The ``into`` and ``bind`` of a conv whose ``run`` has them and computes in the result dtype (else
    neither): the conv written into ``out``, then (unless the kernel clamped it) the fused epilogue over
    out and the extra operands node.inputs[3:], in place."""
    if getattr(run, "bind", None) is None or run.dtype != node.outputs[0].type.numpy_dtype:
        return {}
    found = None if clamped else epilogue_tree(node, 3)
    if any(v is not None and v.const_value is None for v in node.inputs[1:3]):
        # a weight or bias that is not a constant is packed from each run's values: no binding
        return {"into": run.into if found is None else finished_into(node, run.into, 3)}
    if found is None:
        return {"into": lambda out, *args: run.into(out, *args[:3]),
                "bind": lambda out, *args: run.bind(out, *args[:3])}
    tree, bounds = found
    n_operands = 1 + max(0, len(node.inputs) - 3) + len(bounds)
    epilogue = elementwise_kernel(tree, [node.outputs[0].type.dtype] * n_operands)

    def bind(out, *args):
        conv, conv_args = run.bind(out, *args[:3])
        finish, finish_args = epilogue.bind(out, out, *args[3:], *bounds)

        def call():
            conv(*conv_args)
            finish(*finish_args)
        return call, ()
    return {"into": lambda out, *args: bind(out, *args)[0](), "bind": bind}


@lowers("conv2d", family="conv")
def lower_conv2d(node):
    """conv2d: winograd, depthwise / grouped-direct, gemm1x1 or im2col, then the fused epilogue; a lone
    relu or clip is applied by every kernel as it stores its result (for a conv + relu, the separate pass
    measured up to twice the conv). The GEMM forms write into the output buffer they are given."""
    x, a = node.inputs[0].type.shape, node.attrs
    w = conv_weight_shape(node.inputs[1].type.shape, a)
    pads = resolve_auto_pad(a["auto_pad"], x[2:], w[2:], a["strides"], a["dilations"], a["pads"])
    g = _geometry(node, w[2:], pads[:2])
    clamp = clamp_epilogue(node)
    algo, run = _conv2d_run(node, g, pads, compute_dtype(node), numba.get_num_threads(),
                            clamp or (-np.inf, np.inf))
    fn = _with_result_dtype(node, run) if clamp else finished(node, run, 3)
    return Kernel(fn, algo=algo, **_buffer_protocol(node, run, clamp is not None))


@lowers("conv_transpose2d", family="conv")
def lower_conv_transpose2d(node):
    """conv_transpose2d: ``gemm_col2im``, tasks of output channels (a multiple of the workers, each task's
    col = W^T x about SCRATCH_BYTES), bias as the start; written into the output buffer it is given."""
    x, w = node.inputs[0].type.shape, node.inputs[1].type.shape
    (ph, _), (pw, _) = conv_transpose_geometry(x[2:], w[2:], node.attrs)
    g = _geometry(node, w[2:], (ph, pw))
    dtype = compute_dtype(node)
    # W [C, O/g, kh, kw] -> per group the [O/g*kh*kw, C/g] matrix W_g^T
    weight = _packed(node, lambda w: w.reshape(g.group, g.cg, g.og * g.kh * g.kw).transpose(0, 2, 1), dtype)
    per_channel = g.kh * g.kw * g.h * g.w * np.dtype(dtype).itemsize
    count = max(1, round(g.og * per_channel / SCRATCH_BYTES))

    def into(y, x, w, b=None):
        threads = current_threads()
        rows = -(-g.og // _balanced(count, max(1, g.n * g.group), threads, g.og))
        col = scratch("col", (threads, rows * g.kh * g.kw, g.h * g.w), dtype)
        gemm_col2im(frozen(x, dtype).reshape(g.n, g.c, g.h * g.w), weight(w), _bias(b, g.o, dtype), y, col,
                    g.w, *g.window(), rows, threads)

    def run(*args):
        y = np.empty((g.n, g.o, g.oh, g.ow), dtype)
        into(y, *args)
        return y
    same = np.dtype(dtype) == node.outputs[0].type.numpy_dtype
    return Kernel(_with_result_dtype(node, run), algo="gemm-col2im", into=into if same else None)
