"""Neural-network ops: 2-D convolution and transposed convolution, matmul and gemm."""
import numpy as np

from ..errors import IrcError
from ..ir.types import TensorType, broadcast_shapes
from .registry import define


def conv_out_dim(size, k, stride, dilation, pad_begin, pad_end):
    if not isinstance(size, int):
        return size if (k, stride, dilation, pad_begin + pad_end) == (1, 1, 1, 0) else None
    return (size + pad_begin + pad_end - dilation * (k - 1) - 1) // stride + 1


def resolve_auto_pad(auto_pad, in_sizes, kernel, strides, dilations, pads):
    """Explicit [begin..., end...] pads for ONNX auto_pad SAME_UPPER/SAME_LOWER/VALID/NOTSET."""
    n = len(kernel)
    if auto_pad in ("NOTSET", ""):
        return list(pads)
    if auto_pad == "VALID":
        return [0] * (2 * n)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise IrcError(f"unknown auto_pad {auto_pad!r}")
    begin, end = [], []
    for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
        if not isinstance(size, int):
            return None
        out = -(-size // s)
        total = max(0, (out - 1) * s + d * (k - 1) + 1 - size)
        small, big = total // 2, total - total // 2
        begin.append(big if auto_pad == "SAME_LOWER" else small)
        end.append(small if auto_pad == "SAME_LOWER" else big)
    return begin + end


# -- convolution -------------------------------------------------------------------------------------------
_CONV_ATTR_LENGTHS = {"strides": 2, "dilations": 2, "pads": 4, "output_padding": 2}


def _conv_operands(ctx, what):
    """Shapes of input and weight (both 4-D, same dtype) after checking attributes and bias; IrcError else."""
    x, w = ctx.shape(0), ctx.shape(1)
    if x is None or w is None or len(x) != 4 or len(w) != 4:
        raise IrcError(f"{what} needs 4-D input and weight, got {ctx.type(0)} and {ctx.type(1)}")
    if ctx.dtype(1) != ctx.dtype(0):
        raise IrcError(f"{what} input is {ctx.dtype(0)} but weight is {ctx.dtype(1)}")
    for name, n in _CONV_ATTR_LENGTHS.items():
        if name in ctx.attrs and len(ctx[name]) != n:
            raise IrcError(f"{what} attribute {name} needs {n} values, got {ctx[name]}")
    if any(s < 1 for s in [*ctx["strides"], *ctx["dilations"]]) or ctx["group"] < 1:
        raise IrcError(f"{what} strides, dilations and group must be >= 1")
    return x, w


def _check_bias(ctx, what, channels):
    b = ctx.type(2)
    if b is not None and (b.rank != 1 or (isinstance(b.shape[0], int) and isinstance(channels, int)
                                          and b.shape[0] != channels)):
        raise IrcError(f"{what} bias must be a vector of {channels} values, got {b}")


def _check_out_dims(what, dims):
    if any(isinstance(d, int) and d < 1 for d in dims):
        raise IrcError(f"{what} output would have spatial size {list(dims)}")


def _infer_conv(ctx):
    x, w = _conv_operands(ctx, "conv2d")
    if isinstance(x[1], int) and isinstance(w[1], int) and x[1] != w[1] * ctx["group"]:
        raise IrcError(f"conv2d input has {x[1]} channels, weight expects {w[1]} x group {ctx['group']}")
    if isinstance(w[0], int) and w[0] % ctx["group"]:
        raise IrcError(f"conv2d has {w[0]} output channels, not a multiple of group {ctx['group']}")
    _check_bias(ctx, "conv2d", w[0])
    pads = resolve_auto_pad(ctx["auto_pad"], x[2:], w[2:], ctx["strides"], ctx["dilations"], ctx["pads"])
    if pads is None:
        return [TensorType(ctx.dtype(0), (x[0], w[0], None, None))]
    hw = [conv_out_dim(x[2 + i], w[2 + i], ctx["strides"][i], ctx["dilations"][i], pads[i], pads[i + 2])
          for i in range(2)]
    _check_out_dims("conv2d", hw)
    return [TensorType(ctx.dtype(0), (x[0], w[0], *hw))]


def _windows(xp, kh, kw, sh, sw, dh, dw, oh, ow):
    """View of padded NCHW input as [N, C, oh, ow, kh, kw] windows."""
    n, c, _, _ = xp.shape
    s = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, (n, c, oh, ow, kh, kw), (s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw), writeable=False)


@define("conv2d", onnx="Conv", kind="opaque", infer=_infer_conv,
        attrs={"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1, "auto_pad": "NOTSET"})
def conv2d(x, w, b=None, *, strides, pads, dilations, group, auto_pad):
    """2-D convolution (cross-correlation) of NCHW input with OIHW weight, in groups."""
    pads = resolve_auto_pad(auto_pad, x.shape[2:], w.shape[2:], strides, dilations, pads)
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    kh, kw = w.shape[2:]
    oh = conv_out_dim(x.shape[2], kh, strides[0], dilations[0], pads[0], pads[2])
    ow = conv_out_dim(x.shape[3], kw, strides[1], dilations[1], pads[1], pads[3])
    win = _windows(xp, kh, kw, strides[0], strides[1], dilations[0], dilations[1], oh, ow)
    cin, cout = w.shape[1], w.shape[0] // group
    outs = []
    for g in range(group):
        wg = w[g * cout:(g + 1) * cout].astype(np.float64)
        outs.append(np.einsum("nchwij,ocij->nohw", win[:, g * cin:(g + 1) * cin], wg, optimize=True))
    y = np.concatenate(outs, axis=1)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y.astype(x.dtype)


def conv_transpose_geometry(in_sizes, kernel, attrs):
    """Per spatial axis (pad_begin, out_size) of a transposed convolution, as onnxruntime computes them.

    The full result of axis i has (in-1)*stride + (k-1)*dilation + 1 + output_padding positions; the output
    is a window of it starting at pad_begin (positions past the full result are zero). With output_shape the
    window is that long and the pads ignored; SAME_* ask for in*stride positions. The cut is split evenly,
    the odd position at the end for SAME_UPPER and at the start otherwise. A symbolic size gives None.
    """
    auto_pad, pads, output_shape = attrs["auto_pad"], attrs["pads"], attrs["output_shape"]
    if auto_pad not in ("NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise IrcError(f"unknown auto_pad {auto_pad!r}")
    n = len(kernel)
    if output_shape is not None and len(output_shape) != n:
        raise IrcError(f"output_shape must give the {n} spatial sizes, got {list(output_shape)}")
    explicit = auto_pad in ("NOTSET", "")
    geometry = []
    for i, (size, k, s, d, adj) in enumerate(zip(in_sizes, kernel, attrs["strides"], attrs["dilations"],
                                                 attrs["output_padding"])):
        if not isinstance(size, int):
            geometry.append(None)
            continue
        full = (size - 1) * s + (k - 1) * d + 1 + adj
        if output_shape is None and (explicit or auto_pad == "VALID"):
            begin, end = (pads[i], pads[i + n]) if explicit else (0, 0)
            geometry.append((begin, full - begin - end))
            continue
        out = int(output_shape[i]) if output_shape is not None else size * s
        cut = max(0, full - out)
        geometry.append((cut // 2 if auto_pad == "SAME_UPPER" else cut - cut // 2, out))
    return geometry


def _infer_conv_transpose(ctx):
    x, w = _conv_operands(ctx, "conv_transpose2d")
    if isinstance(x[1], int) and isinstance(w[0], int) and (x[1] != w[0] or x[1] % ctx["group"]):
        raise IrcError(f"conv_transpose2d input has {x[1]} channels, weight expects {w[0]} "
                       f"in {ctx['group']} group(s)")
    channels = w[1] * ctx["group"] if isinstance(w[1], int) else None
    _check_bias(ctx, "conv_transpose2d", channels)
    static_kernel = all(isinstance(k, int) for k in w[2:])
    geometry = conv_transpose_geometry(x[2:], w[2:], ctx.attrs) if static_kernel else [None, None]
    hw = [None if g is None else g[1] for g in geometry]
    _check_out_dims("conv_transpose2d", hw)
    return [TensorType(ctx.dtype(0), (x[0], channels, *hw))]


@define("conv_transpose2d", onnx="ConvTranspose", kind="opaque", infer=_infer_conv_transpose,
        attrs={"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1, "auto_pad": "NOTSET",
               "output_padding": [0, 0], "output_shape": None})
def conv_transpose2d(x, w, b=None, **attrs):
    """2-D transposed convolution (the adjoint of conv2d) of NCHW input with [C_in, C_out/group, kh, kw]
    weight: every input pixel scatters its weighted kernel into the output, strided and dilated."""
    (bh, oh), (bw, ow) = conv_transpose_geometry(x.shape[2:], w.shape[2:], attrs)
    n, cin, h, wd = x.shape
    group = attrs["group"]
    cg, og, kh, kw = cin // group, w.shape[1], w.shape[2], w.shape[3]
    (sh, sw), (dh, dw) = attrs["strides"], attrs["dilations"]
    full = np.zeros((n, og * group, max(bh + oh, (h - 1) * sh + (kh - 1) * dh + 1),
                     max(bw + ow, (wd - 1) * sw + (kw - 1) * dw + 1)))
    for g in range(group):
        cols = np.einsum("nchw,cokl->noklhw", x[:, g * cg:(g + 1) * cg], w[g * cg:(g + 1) * cg].astype(np.float64))
        for i in range(kh):
            for j in range(kw):
                full[:, g * og:(g + 1) * og, i * dh:i * dh + (h - 1) * sh + 1:sh,
                     j * dw:j * dw + (wd - 1) * sw + 1:sw] += cols[:, :, i, j]
    y = full[:, :, bh:bh + oh, bw:bw + ow]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y.astype(x.dtype)


# -- matrix products ---------------------------------------------------------------------------------------
def _check_same_dtype(ctx, what):
    if ctx.dtype(1) != ctx.dtype(0):
        raise IrcError(f"{what} operands have dtypes {ctx.dtype(0)} and {ctx.dtype(1)}")


def _contraction_mismatch(k1, k2):
    return isinstance(k1, int) and isinstance(k2, int) and k1 != k2


def _infer_matmul(ctx):
    _check_same_dtype(ctx, "matmul")
    a, b = ctx.shape(0), ctx.shape(1)
    if a is None or b is None:
        return [TensorType(ctx.dtype(0), None)]
    if not a or not b:
        raise IrcError(f"matmul operands must have rank >= 1, got {ctx.type(0)} and {ctx.type(1)}")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if _contraction_mismatch(a2[-1], b2[-2]):
        raise IrcError(f"matmul of {ctx.type(0)} and {ctx.type(1)}: inner dims {a2[-1]} and {b2[-2]} differ")
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    rows = (a2[-2],) if len(a) > 1 else ()
    cols = (b2[-1],) if len(b) > 1 else ()
    return [TensorType(ctx.dtype(0), batch + rows + cols)]


def _accumulate_dtype(dtype):
    """float16 is multiplied and summed in float32 and rounded once; other dtypes compute in their own."""
    return np.float32 if dtype == np.float16 else dtype


@define("matmul", onnx="MatMul", kind="opaque", infer=_infer_matmul)
def matmul(a, b):
    """numpy matmul: 1-D operands are promoted to a row/column and the added axis dropped; batch axes
    (all but the last two) broadcast."""
    acc = _accumulate_dtype(a.dtype)
    return np.matmul(a.astype(acc, copy=False), b.astype(acc, copy=False)).astype(a.dtype)


def _gemm_dims(a_shape, b_shape, trans_a, trans_b):
    """(M, K of A, K of B, N) of a gemm's operands after the transposes."""
    m, ka = a_shape[::-1] if trans_a else a_shape
    kb, n = b_shape[::-1] if trans_b else b_shape
    return m, ka, kb, n


def _broadcasts_to(shape, target) -> bool:
    try:
        return broadcast_shapes(shape, target) == tuple(target)
    except IrcError:
        return False


def _infer_gemm(ctx):
    _check_same_dtype(ctx, "gemm")
    a, b, c = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        raise IrcError(f"gemm needs 2-D A and B, got {ctx.type(0)} and {ctx.type(1)}")
    m, ka, kb, n = _gemm_dims(a, b, ctx["transA"], ctx["transB"])
    if _contraction_mismatch(ka, kb):
        raise IrcError(f"gemm of {ctx.type(0)} and {ctx.type(1)} (transA={ctx['transA']}, "
                       f"transB={ctx['transB']}): inner dims {ka} and {kb} differ")
    if c is not None and (len(c) > 2 or not _broadcasts_to(c, (m, n))):
        raise IrcError(f"gemm C {ctx.type(2)} does not broadcast to [{m}, {n}]")
    return [TensorType(ctx.dtype(0), (m, n))]


@define("gemm", onnx="Gemm", kind="opaque", infer=_infer_gemm,
        attrs={"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
def gemm(a, b, c=None, *, alpha, beta, transA, transB):
    """alpha * A' B' + beta * C with A' = A or A^T (transA), B' likewise, C broadcast to the result."""
    a = a.T if transA else a
    b = b.T if transB else b
    y = alpha * (a.astype(np.float64) @ b.astype(np.float64))
    if c is not None:
        y = y + beta * c
    return y.astype(a.dtype)
