"""Quantized kernels: linear (de)quantization and the int8 GEMM behind every integer conv and matmul.

The int8 GEMM computes ``acc[n, p] = sum_k (x[p, k] - x_zp) * (w[n, k] - w_zp[n])`` for activations
``x`` (pixels/rows ``p``) and weights ``w`` (output channels/columns ``n``) both laid out along K, so the
inner loop is a dot product of two contiguous byte rows. The activations are unsigned and the weights
signed (uint8 x int8, the operand pair of the x86 dot-product instructions): int8 activations are moved
to uint8 by flipping the sign bit (x + 128, zero point + 128), uint8 weights to int8 by subtracting 128
(zero point - 128). The zero points come out of the dot product by expanding the sum,

    acc = dot(x, w) - w_zp[n] * sum_k x[p, k] - x_zp * sum_k w[n, k] + K * x_zp * w_zp[n] + bias[n],

where everything but ``dot`` and the row sums of x is per-channel and packed once (``Packed``). K is
padded with zeros to a multiple of ``K_ALIGN``. The accumulator leaves the kernel in one of three ways, in
the same loop that computes it: as int32 (ConvInteger, MatMulInteger), requantized (``round(acc * scale)
+ y_zp`` clamped to [qmin, qmax], which also carries a fused relu or clip) or dequantized (``acc * scale``).

Two kernels compute it, both parallel over the pixels (``prange``; numba's pool is irc's only pool):
- on hosts with AVX-512 VNNI, ``qgemm_vnni_kernel``: a register tile of TILE_PIXELS pixels by
  TILE_CHANNELS channels accumulates with one ``vpdpbusd`` (uint8 x int8, 4 taps summed into each int32
  lane) per 16 channels, pixel and 4 taps. The instruction is emitted by an LLVM intrinsic call
  (``_vnni_tile``): LLVM's vectorizer does not form it from a scalar loop. The weight is packed at
  lowering in the layout the instruction reads (``_layout``): per block of channels and step of 4 taps,
  the channels' 4 taps side by side;
- elsewhere, ``qgemm_kernel``: a dot-product loop written for LLVM's loop vectorizer (bytes widened to
  int32, the sum truncated to int32), which the x86 backend turns into multiply-add instructions
  (``vpdpwssd`` with AVX-512 VNNI, ``vpmaddwd`` without).

Convolution runs as im2col: an image in NHWC order is unrolled into one row per output pixel with the
(kernel row, kernel column, channel) taps in order, padding filled with the zero point; the weight is
packed in the same tap order. Grouped convolutions run one GEMM per group.
"""
from __future__ import annotations

from dataclasses import dataclass

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ...backend.registry import Kernel, lowers
from ...errors import IrcError
from ...ops.nn import conv_out_dim, resolve_auto_pad
from ...ops.quant import dtype_range, dynamic_params
from .gemm import frozen
from .movement import naming_node, numpy_kernel

K_ALIGN = 16
TILE_PIXELS, TILE_CHANNELS = 4, 32      # the VNNI kernel's register tile: 4 x 2 accumulators of 16 int32
# the host has AVX-512 VNNI (numba compiles for the host; its on-disk cache is keyed by the CPU)
VNNI = bool(llvm.get_host_cpu_features().get("avx512vnni"))
RAW, DEQUANTIZE, REQUANTIZE = 0, 1, 2     # what leaves the GEMM: int32 acc, acc * scale, requantized


# -- quantize / dequantize -------------------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def _quantize(x, scale, zp, lo, hi, out):
    """out[a, c, b] = clamp(rint(x[a, c, b] / scale[c]) + zp[c], lo, hi) for x [A, C, B] float32."""
    n0, n1, n2 = x.shape
    for r in prange(n0 * n1):
        a, c = r // n1, r % n1
        s, z = scale[c], zp[c]
        for b in range(n2):
            q = np.rint(x[a, c, b] / s) + z
            out[a, c, b] = 0 if q != q else min(max(q, lo), hi)


@njit(cache=True, parallel=True)
def _dequantize(x, scale, zp, out):
    """out[a, c, b] = (x[a, c, b] - zp[c]) * scale[c] for integer x [A, C, B]."""
    n0, n1, n2 = x.shape
    for r in prange(n0 * n1):
        a, c = r // n1, r % n1
        s, z = scale[c], zp[c]
        for b in range(n2):
            out[a, c, b] = (np.int64(x[a, c, b]) - z) * s


def _per_channel(x_shape, axis, p, dtype, default=0):
    """(x as [outer, C, inner] shape, p as a [C] vector of ``dtype``) for a per-tensor or per-axis p."""
    p = np.asarray(default if p is None else p)
    if p.size == 1 or not x_shape:
        n = int(np.prod(x_shape, dtype=np.int64))
        return (1, 1, n), np.full(1, p.reshape(-1)[0] if p.size else default, dtype)
    axis %= len(x_shape)
    outer = int(np.prod(x_shape[:axis], dtype=np.int64))
    inner = int(np.prod(x_shape[axis + 1:], dtype=np.int64))
    return (outer, x_shape[axis], inner), np.ascontiguousarray(p.reshape(-1), dtype=dtype)


@lowers("quantize_linear", family="quant")
def lower_quantize_linear(node):
    """Per-tensor and per-axis quantization in numba; blocked quantization runs the reference."""
    if node.attrs["block_size"]:
        return numpy_kernel(node)
    axis, dtype = node.attrs["axis"], node.outputs[0].type.numpy_dtype
    lo, hi = dtype_range(dtype)

    def run(x, scale, zp=None):
        shape, s = _per_channel(x.shape, axis, scale, np.float32)
        _, z = _per_channel(x.shape, axis, zp, np.float64)
        out = np.empty(x.shape, dtype)
        _quantize(frozen(x, np.float32).reshape(shape), s, z, float(lo), float(hi), out.reshape(shape))
        return out
    return Kernel(naming_node(node, run))


@lowers("dequantize_linear", family="quant")
def lower_dequantize_linear(node):
    """Per-tensor and per-axis dequantization in numba (float16 computed in float32); blocked runs the
    reference."""
    if node.attrs["block_size"]:
        return numpy_kernel(node)
    axis, dtype = node.attrs["axis"], node.outputs[0].type.numpy_dtype
    work = np.dtype(np.float32) if dtype == np.float16 else dtype

    def run(x, scale, zp=None):
        shape, s = _per_channel(x.shape, axis, scale, work)
        _, z = _per_channel(x.shape, axis, zp, np.int64)
        out = np.empty(x.shape, work)
        _dequantize(frozen(x, x.dtype).reshape(shape), s, z, out.reshape(shape))
        return out.astype(dtype, copy=False)
    return Kernel(naming_node(node, run))


@lowers("dynamic_quantize_linear", family="quant")
def lower_dynamic_quantize_linear(node):
    """Scale and zero point from the input's range (numpy min/max), then the quantize kernel."""
    def run(x):
        scale, zp = dynamic_params(x)
        out = np.zeros(x.shape, np.uint8)
        if scale != 0:
            n = (1, 1, x.size)
            _quantize(frozen(x, np.float32).reshape(n), np.full(1, scale, np.float32),
                      np.full(1, float(zp)), 0.0, 255.0, out.reshape(n))
        return out, np.array(scale, np.float32), np.array(zp, np.uint8)
    return Kernel(naming_node(node, run))


# -- the int8 GEMM -----------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _store(out, transposed, n, p, dot, zpw, xsum, cst, scale, yzp, qmin, qmax, mode):
    """The epilogue of one result: acc = dot - zpw * xsum + cst, then out[n, p] (out[p, n] when
    ``transposed``) = acc (RAW), acc * scale (DEQUANTIZE) or clamp(rint(acc * scale) + yzp, qmin, qmax)."""
    acc = np.int64(dot) - zpw * xsum + cst
    if mode == RAW:
        v = acc
    elif mode == DEQUANTIZE:
        v = np.float32(acc) * scale
    else:
        v = min(max(np.rint(np.float32(acc) * scale) + yzp, qmin), qmax)
    if transposed:
        out[p, n] = v
    else:
        out[n, p] = v


@njit(cache=True)
def _dots(xrow, w, acc):
    """acc[n] = dot(xrow, w[n]) for a uint8 row and int8 rows: a reduction whose products are widened to
    int32 and whose sum is stored truncated to int32, which LLVM vectorizes into multiply-adds."""
    for n in range(w.shape[0]):
        s = 0
        for k in range(xrow.shape[0]):
            s += np.int32(xrow[k]) * np.int32(w[n, k])
        acc[n] = np.int32(s)


@njit(cache=True, parallel=True)
def qgemm_kernel(xt, xsum, w, zpw, cst, scale, yzp, qmin, qmax, mode, out, transposed):
    """The portable int8 GEMM: for each pixel p < len(xsum), the dot products of xt[p] (uint8) with every
    row of w (int8, [N, Kp]) by ``_dots``, then ``_store``."""
    for p in prange(xsum.shape[0]):
        acc = np.empty(w.shape[0], np.int32)
        _dots(xt[p], w, acc)
        for n in range(w.shape[0]):
            _store(out, transposed, n, p, acc[n], zpw[n], xsum[p], cst[n], scale[n], yzp, qmin, qmax, mode)


@intrinsic
def _vnni_tile(typingctx, xaddr, xstride, waddr, nkb, taddr):
    """tile[r, j] = sum_kb dot4(x[r, 4kb:4kb+4], w[kb, j]) for r < TILE_PIXELS, j < TILE_CHANNELS: one
    vpdpbusd per (row, 16 channels, 4 taps), the accumulators in registers. x rows (uint8) start at
    ``xaddr``, ``xstride`` bytes apart; w is one channel block [Kp/4, TILE_CHANNELS, 4] (int8) at ``waddr``;
    the int32 tile [TILE_PIXELS, TILE_CHANNELS] is written at ``taddr``."""
    sig = types.void(types.intp, types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        xaddr, xstride, waddr, nkb, taddr = args
        i32, intp = ir.IntType(32), xaddr.type
        v16, v64 = ir.VectorType(i32, 16), ir.VectorType(ir.IntType(8), 64)
        dot4 = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v16, [v16, v64, v64]),
                                              "llvm.x86.avx512.vpdpbusd.512")
        blocks = TILE_CHANNELS // 16
        accs = [[cgutils.alloca_once_value(builder, ir.Constant(v16, None)) for _ in range(blocks)]
                for _ in range(TILE_PIXELS)]

        def at(addr, offset, ty):
            return builder.inttoptr(builder.add(addr, offset), ty.as_pointer())

        with cgutils.for_range(builder, nkb) as loop:
            wrow = builder.add(waddr, builder.mul(loop.index, ir.Constant(intp, 4 * TILE_CHANNELS)))
            ws = [builder.load(at(wrow, ir.Constant(intp, 64 * c), v64), align=1) for c in range(blocks)]
            xcol = builder.add(xaddr, builder.mul(loop.index, ir.Constant(intp, 4)))
            for r in range(TILE_PIXELS):
                x4 = builder.load(at(xcol, builder.mul(xstride, ir.Constant(intp, r)), i32), align=1)
                splat = builder.shuffle_vector(builder.insert_element(ir.Constant(v16, None), x4, ir.Constant(i32, 0)),
                                               ir.Constant(v16, None), ir.Constant(v16, [0] * 16))
                xs = builder.bitcast(splat, v64)
                for c in range(blocks):
                    builder.store(builder.call(dot4, [builder.load(accs[r][c]), xs, ws[c]]), accs[r][c])
        for r in range(TILE_PIXELS):
            for c in range(blocks):
                offset = ir.Constant(intp, 4 * (r * TILE_CHANNELS + 16 * c))
                builder.store(builder.load(accs[r][c]), at(taddr, offset, v16), align=4)
        return context.get_dummy_value()
    return sig, codegen


@njit(cache=True, parallel=True)
def qgemm_vnni_kernel(xt, xsum, w, zpw, cst, scale, yzp, qmin, qmax, mode, out, transposed):
    """The AVX-512 VNNI int8 GEMM: tiles of TILE_PIXELS pixels (rows of xt, whose row count is a multiple
    of TILE_PIXELS) by TILE_CHANNELS channels (blocks of w [N/TILE_CHANNELS, Kp/4, TILE_CHANNELS, 4]),
    parallel over the pixel tiles, each tile's accumulators stored by ``_store``."""
    n_pix, n_out = xsum.shape[0], zpw.shape[0]
    kp = xt.shape[1]
    n_tiles = -(-n_pix // TILE_PIXELS)
    tiles = np.empty((n_tiles, TILE_PIXELS, TILE_CHANNELS), np.int32)
    block_bytes = kp * TILE_CHANNELS
    for t in prange(n_tiles):
        p0 = t * TILE_PIXELS
        rows = min(TILE_PIXELS, n_pix - p0)
        tile = tiles[t]
        for b in range(w.shape[0]):
            _vnni_tile(xt.ctypes.data + p0 * kp, kp, w.ctypes.data + b * block_bytes, kp // 4,
                       tiles.ctypes.data + t * TILE_PIXELS * TILE_CHANNELS * 4)
            for j in range(min(TILE_CHANNELS, n_out - b * TILE_CHANNELS)):
                n = b * TILE_CHANNELS + j
                for r in range(rows):
                    _store(out, transposed, n, p0 + r, tile[r, j], zpw[n], xsum[p0 + r], cst[n], scale[n], yzp,
                           qmin, qmax, mode)


@njit(cache=True, parallel=True)
def _rows_u8(a, flip, xt, xsum):
    """xt[p, :K] = a[p] as uint8 (sign bit flipped by ``flip`` 128 for int8 input), xsum[p] its sum."""
    rows, k = a.shape
    for p in prange(rows):
        s = 0
        for j in range(k):
            v = np.uint8(np.int32(a[p, j]) ^ flip) if flip else np.uint8(a[p, j])
            xt[p, j] = v
            s += np.int32(v)
        xsum[p] = s


@njit(cache=True, parallel=True)
def _im2col_u8(x, pad, xt, xsum, kh, kw, sh, sw, dh, dw, ph, pw, ow):
    """Row p = (oy, ox) of xt (p < len(xsum)): the taps (i, j, c) of output pixel p's window of the NHWC
    uint8 image x [H, W, C], ``pad`` outside the image; xsum[p] the row's sum. A kernel row that lies inside
    the image with dilation 1 is one contiguous run of kw * C bytes."""
    h, wd, c = x.shape
    run = kw * c
    for p in prange(xsum.shape[0]):
        oy, ox = p // ow, p % ow
        row = xt[p]
        for i in range(kh):
            iy = oy * sh - ph + i * dh
            x0 = ox * sw - pw
            base = i * run
            if 0 <= iy < h and dw == 1 and x0 >= 0 and x0 + kw <= wd:
                row[base:base + run] = x[iy, x0:x0 + kw].reshape(run)
                continue
            for j in range(kw):
                ix = x0 + j * dw
                if 0 <= iy < h and 0 <= ix < wd:
                    row[base + j * c:base + (j + 1) * c] = x[iy, ix]
                else:
                    row[base + j * c:base + (j + 1) * c] = pad
        s = 0
        for k in range(kh * run):
            s += np.int32(row[k])
        xsum[p] = s


def _aligned(k: int) -> int:
    return -(-k // K_ALIGN) * K_ALIGN


def activation_rows(rows: int, k: int):
    """(xt, xsum) buffers for ``rows`` activation rows of K taps: xt [rows rounded up to TILE_PIXELS, Kp]
    zero-filled (the padding rows and taps add nothing), xsum [rows]."""
    return np.zeros((-(-rows // TILE_PIXELS) * TILE_PIXELS, _aligned(k)), np.uint8), np.empty(rows, np.int64)


def _flip(dtype) -> int:
    """What to xor an activation byte with to read it as uint8 (x + 128 for int8)."""
    return 128 if np.dtype(dtype) == np.int8 else 0


@dataclass
class Packed:
    """A weight packed for the int8 GEMM kernel with its per-channel constants."""
    w: np.ndarray        # int8: [N, Kp] (portable) or [N/TILE_CHANNELS, Kp/4, TILE_CHANNELS, 4] (VNNI)
    zpw: np.ndarray      # [N] int64, the weight zero point in int8 terms
    cst: np.ndarray      # [N] int64: bias - x_zp * sum_k w + K * x_zp * zpw
    scale: np.ndarray    # [N] float32


def _layout(w: np.ndarray, vnni: bool) -> np.ndarray:
    """The [N, Kp] weight in the kernel's layout: as is, or for VNNI channel blocks of TILE_CHANNELS
    (N padded with zero channels), each [Kp/4, TILE_CHANNELS, 4]: the 4 taps of one step of every
    channel of the block side by side, 64 bytes per 16 channels."""
    if not vnni:
        return w
    n, kp = w.shape
    blocks = -(-n // TILE_CHANNELS)
    padded = np.zeros((blocks * TILE_CHANNELS, kp), np.int8)
    padded[:n] = w
    return padded.reshape(blocks, TILE_CHANNELS, kp // 4, 4).transpose(0, 2, 1, 3)


def pack(w2, w_zp, x_zp_u8: int, bias, scale, vnni: bool = VNNI) -> Packed:
    """Pack a weight [N, K] (int8 or uint8) for activations of uint8 zero point ``x_zp_u8``; ``w_zp`` and
    ``scale`` per tensor or per channel, ``bias`` int32 [N] or None; in the VNNI kernel's layout or not."""
    n, k = w2.shape
    shift = 128 if w2.dtype == np.uint8 else 0
    w = np.zeros((n, _aligned(k)), np.int8)
    w[:, :k] = (w2.astype(np.int16) - shift).astype(np.int8)
    zpw = np.broadcast_to(np.asarray(0 if w_zp is None else w_zp, np.int64).reshape(-1), (n,)) - shift
    wsum = w[:, :k].astype(np.int64).sum(axis=1)
    cst = k * x_zp_u8 * zpw - x_zp_u8 * wsum
    if bias is not None:
        cst = cst + np.asarray(bias, np.int64).reshape(-1)
    s = np.broadcast_to(np.asarray(1.0 if scale is None else scale, np.float32).reshape(-1), (n,))
    return Packed(frozen(_layout(w, vnni), np.int8), frozen(zpw, np.int64), frozen(cst, np.int64),
                  frozen(s, np.float32))


@dataclass
class Epilogue:
    """How the accumulator leaves the GEMM: mode, y zero point and clamp, and the result dtype."""
    mode: int
    dtype: np.dtype
    yzp: float = 0.0
    qmin: float = 0.0
    qmax: float = 0.0


def epilogue_of(dtype, y_zp, qmin, qmax) -> Epilogue:
    dtype = np.dtype(dtype)
    if dtype == np.int32:
        return Epilogue(RAW, dtype)
    if dtype == np.float32:
        return Epilogue(DEQUANTIZE, dtype)
    lo, hi = dtype_range(dtype)
    return Epilogue(REQUANTIZE, dtype, float(np.asarray(y_zp).reshape(-1)[0]),
                    float(lo if qmin is None else qmin), float(hi if qmax is None else qmax))


def run_gemm(xt, xsum, packed: Packed, ep: Epilogue, out, transposed: bool):
    """out = the int8 GEMM of the activation rows xt (len(xsum) of them) and the packed weight."""
    kernel = qgemm_vnni_kernel if packed.w.ndim == 4 else qgemm_kernel
    kernel(xt, xsum, packed.w, packed.zpw, packed.cst, packed.scale, ep.yzp, ep.qmin, ep.qmax, ep.mode,
                 out, transposed)


def _scalar_zp(zp, what) -> int:
    z = np.asarray(0 if zp is None else zp)
    if z.size != 1:
        raise IrcError(f"{what} zero point must be per tensor, got shape {list(z.shape)}")
    return int(z.reshape(-1)[0])


def _requant_scale(x_scale, w_scale, y_scale):
    """The float32 multiplier per channel: x_scale * w_scale (/ y_scale), as the reference forms it."""
    s = np.asarray(x_scale).astype(np.float32).reshape(-1) * np.asarray(w_scale).astype(np.float32).reshape(-1)
    return s if y_scale is None else s / np.asarray(y_scale).astype(np.float32).reshape(-1)


# -- operand roles of each op, so one lowering serves them all -----------------------------------------------------
# op -> operand index of (x, x_scale, x_zp, w, w_scale, w_zp, bias, y_scale, y_zp); None: the op has no such operand
_ROLES = {
    "conv_integer": (0, None, 2, 1, None, 3, None, None, None),
    "matmul_integer": (0, None, 2, 1, None, 3, None, None, None),
    "qlinear_conv": (0, 1, 2, 3, 4, 5, 8, 6, 7),
    "qlinear_matmul": (0, 1, 2, 3, 4, 5, None, 6, 7),
    "qconv2d": tuple(range(9)),
    "qgemm": tuple(range(9)),
}
_NAMES = ("x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "bias", "y_scale", "y_zp")


def _roles(node, args):
    """The operands of ``node`` by role name (None when absent)."""
    return {name: (args[i] if i is not None and i < len(args) else None)
            for name, i in zip(_NAMES, _ROLES[node.op])}


def _packer(node, weight_matrix, select=lambda ops: ops, packing=None):
    """fn(operands) -> Packed: packed once at lowering when the weight and its parameters are constants,
    else on every run. ``select(ops)`` picks the operands of one GEMM (a group's channels),
    ``weight_matrix(w)`` gives its [N, K] weight matrix in the kernel's tap order and ``packing`` packs it
    (``pack``, for activations of uint8 zero point x_zp)."""
    packing = packing or pack

    def make(all_ops):
        ops = select(all_ops)
        x_zp = _scalar_zp(ops["x_zp"], "input") + _flip(node.inputs[0].type.numpy_dtype)
        scale = None
        if node.outputs[0].type.dtype != "i32":
            scale = _requant_scale(ops["x_scale"], ops["w_scale"], ops["y_scale"])
        return packing(weight_matrix(ops["w"]), ops["w_zp"], x_zp, ops["bias"], scale)

    consts = _roles(node, [None if v is None else v.const_value for v in node.inputs])
    needed = [name for name, v in _roles(node, node.inputs).items() if v is not None and name not in ("x", "y_zp")]
    if all(consts[name] is not None for name in needed):
        packed = make(consts)
        return lambda ops: packed
    return make


def _epilogue(node, ops) -> Epilogue:
    return epilogue_of(node.outputs[0].type.numpy_dtype, ops["y_zp"], node.attrs.get("qmin"),
                       node.attrs.get("qmax"))


# -- integer convolution ---------------------------------------------------------------------------------------------
def _conv_geometry(node):
    x, w = node.inputs[0].type.shape, node.inputs[_ROLES[node.op][3]].type.shape
    a = node.attrs
    pads = resolve_auto_pad(a["auto_pad"], x[2:], w[2:], a["strides"], a["dilations"], a["pads"])
    oh = conv_out_dim(x[2], w[2], a["strides"][0], a["dilations"][0], pads[0], pads[2])
    ow = conv_out_dim(x[3], w[3], a["strides"][1], a["dilations"][1], pads[1], pads[3])
    return pads, oh, ow


@njit(cache=True, parallel=True)
def _depthwise(x, zpx, w, cst, scale, yzp, qmin, qmax, mode, out, sh, sw, dh, dw, ph, pw, ow):
    """Depthwise int8 convolution of the image x [C, H, W] (int8 or uint8, zero point ``zpx``) by
    w [C, kh, kw] (int32, its zero point already subtracted): taps outside the image are skipped (they
    are the zero point, adding nothing), then ``_store`` into out [C, OH*OW]; parallel over channels."""
    c_n, h, wd = x.shape
    kh, kw = w.shape[1], w.shape[2]
    for c in prange(c_n):
        for p in range(out.shape[1]):
            oy, ox = p // ow, p % ow
            acc = 0
            for i in range(kh):
                iy = oy * sh - ph + i * dh
                if 0 <= iy < h:
                    for j in range(kw):
                        ix = ox * sw - pw + j * dw
                        if 0 <= ix < wd:
                            acc += (np.int32(x[c, iy, ix]) - zpx) * w[c, i, j]
            _store(out, False, c, p, acc, 0, 0, cst[c], scale[c], yzp, qmin, qmax, mode)


def pack_depthwise(w, w_zp, x_zp_u8: int, bias, scale) -> Packed:
    """A depthwise weight [C, kh, kw] (int8 or uint8) as int32 less its zero point; cst is the bias."""
    c = w.shape[0]
    zp = np.asarray(0 if w_zp is None else w_zp, np.int32).reshape(-1, 1, 1)
    s = np.broadcast_to(np.asarray(1.0 if scale is None else scale, np.float32).reshape(-1), (c,))
    cst = np.zeros(c, np.int64) if bias is None else np.asarray(bias, np.int64).reshape(-1)
    return Packed(frozen(w.astype(np.int32) - zp, np.int32), frozen(np.zeros(c), np.int64), frozen(cst, np.int64),
                  frozen(s, np.float32))


def _conv_setup(node):
    """(group, strides, dilations, pads, oh, ow, og, kh, kw) of an integer convolution."""
    if node.inputs[0].type.shape is None or not node.inputs[0].type.is_static:
        raise IrcError("integer convolution needs a static input shape")
    group = node.attrs["group"]
    pads, oh, ow = _conv_geometry(node)
    wshape = node.inputs[_ROLES[node.op][3]].type.shape
    return (group, node.attrs["strides"], node.attrs["dilations"], pads, oh, ow, wshape[0] // group,
            wshape[2], wshape[3])


def _lower_depthwise(node):
    """One input and one output channel per group: the direct depthwise kernel."""
    _, (sh, sw), (dh, dw), pads, oh, ow, _, _, _ = _conv_setup(node)
    packer = _packer(node, lambda w: np.asarray(w)[:, 0], packing=pack_depthwise)

    def run(*args):
        ops = _roles(node, args)
        ep, packed, x = _epilogue(node, ops), packer(ops), ops["x"]
        zpx = _scalar_zp(ops["x_zp"], "input")
        y = np.empty((x.shape[0], x.shape[1], oh, ow), ep.dtype)
        for i in range(x.shape[0]):
            _depthwise(frozen(x[i], x.dtype), zpx, packed.w, packed.cst, packed.scale, ep.yzp, ep.qmin,
                       ep.qmax, ep.mode, y[i].reshape(x.shape[1], oh * ow), sh, sw, dh, dw, pads[0], pads[1], ow)
        return y
    return Kernel(naming_node(node, run), algo="int8-depthwise")


@lowers("conv_integer", "qlinear_conv", "qconv2d", family="quant")
def lower_integer_conv(node):
    """Depthwise convolutions run ``_depthwise``; the others im2col per image and group, then the int8
    GEMM with its epilogue into the NCHW result."""
    group, (sh, sw), (dh, dw), pads, oh, ow, og, kh, kw = _conv_setup(node)
    if group > 1 and og == 1 and node.inputs[0].type.shape[1] == group:
        return _lower_depthwise(node)
    packers = [_packer(node, _conv_taps, lambda ops, g=g: _group_ops(ops, g, og)) for g in range(group)]
    flip = _flip(node.inputs[0].type.numpy_dtype)

    def run(*args):
        ops = _roles(node, args)
        ep = _epilogue(node, ops)
        packed = [p(ops) for p in packers]
        x = ops["x"]
        n, c = x.shape[:2]
        cg = c // group
        pad = np.uint8(_scalar_zp(ops["x_zp"], "input") + flip)
        k = kh * kw * cg
        xt, xsum = activation_rows(oh * ow, k)
        y = np.empty((n, og * group, oh, ow), ep.dtype)
        for i in range(n):
            nhwc = np.bitwise_xor(x[i].transpose(1, 2, 0).view(np.uint8), np.uint8(flip), order="C")  # x + 128
            for g in range(group):
                img = frozen(nhwc[:, :, g * cg:(g + 1) * cg], np.uint8)
                _im2col_u8(img, pad, xt, xsum, kh, kw, sh, sw, dh, dw, pads[0], pads[1], ow)
                out = y[i, g * og:(g + 1) * og].reshape(og, oh * ow)
                run_gemm(xt, xsum, packed[g], ep, out, False)
        return y
    return Kernel(naming_node(node, run), algo="int8-im2col")


def _conv_taps(w):
    """An [O, C, kh, kw] weight as the [O, kh*kw*C] matrix in im2col's tap order."""
    return np.ascontiguousarray(np.asarray(w).transpose(0, 2, 3, 1)).reshape(w.shape[0], -1)


def _group_ops(ops, g, og):
    """The operands of group g: the weight, its per-channel parameters and the bias sliced to its channels."""
    out = dict(ops)
    out["w"] = ops["w"][g * og:(g + 1) * og]
    for name in ("w_zp", "w_scale", "bias"):
        v = ops[name]
        if v is not None and np.size(v) > 1:
            out[name] = np.asarray(v).reshape(-1)[g * og:(g + 1) * og]
    return out


# -- integer matrix products -----------------------------------------------------------------------------------------
def _gemm_ready(node) -> bool:
    """Whether the GEMM path applies: a 2-D weight and per-tensor input parameters."""
    r = _ROLES[node.op]
    w, x = node.inputs[r[3]].type, node.inputs[0].type
    small = [node.inputs[i] for i in (r[1], r[2]) if i is not None and i < len(node.inputs)]
    return w.rank == 2 and x.rank is not None and x.rank >= 1 and \
        all(v is None or v.type.numel() == 1 for v in small)


@lowers("matmul_integer", "qlinear_matmul", "qgemm", family="quant")
def lower_integer_matmul(node):
    """The input's rows (all axes but the last) against the [K, N] weight through the int8 GEMM; other
    forms (batched weights, per-row input parameters) run the reference."""
    if not _gemm_ready(node):
        return numpy_kernel(node)
    packer = _packer(node, lambda w: np.ascontiguousarray(np.asarray(w).T))
    flip = _flip(node.inputs[0].type.numpy_dtype)

    def run(*args):
        ops = _roles(node, args)
        ep = _epilogue(node, ops)
        packed = packer(ops)
        a = ops["x"]
        k = a.shape[-1]
        rows = frozen(a, a.dtype).reshape(-1, k)
        xt, xsum = activation_rows(rows.shape[0], k)
        _rows_u8(rows, flip, xt[:, :k], xsum)
        n = packed.zpw.shape[0]
        out = np.empty((rows.shape[0], n), ep.dtype)
        run_gemm(xt, xsum, packed, ep, out, True)
        return out.reshape(a.shape[:-1] + (n,))
    return Kernel(naming_node(node, run), algo="int8-gemm")
