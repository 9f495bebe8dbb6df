"""Quantized ops: linear (de)quantization, integer matrix products and convolutions, and the fused int8
ops the ``fuse-qdq`` pass makes.

Linear quantization maps a real ``r`` to an integer ``q = saturate(round(r / scale) + zero_point)``
(round half to even, saturate to the integer type's range) and back by ``r = (q - zero_point) * scale``.
A scale and zero point are per tensor (one value), per axis (a vector along ``axis``: one per channel)
or blocked (``block_size`` consecutive entries along ``axis`` share one). Arithmetic follows onnxruntime:
float32 for the division and requantization, int32 accumulation.

The fused ops ``qconv2d`` and ``qgemm`` run an integer convolution / matrix product of a quantized input
with a constant quantized weight, add an int32 bias, and either requantize (``y_scale`` given: the result is
``clamp(round(acc * x_scale * w_scale / y_scale) + y_zero_point, qmin, qmax)``, the clamp carrying a fused
relu or clip) or dequantize (``acc * x_scale * w_scale`` as float32) in the same pass over the accumulator.
"""
from __future__ import annotations

import numpy as np

from ..errors import IrcError
from ..ir.types import TensorType, to_numpy_dtype
from .nn import _conv2d, _infer_conv, _infer_matmul
from .registry import define

QUANT_DTYPES = ("i8", "u8", "i16", "u16", "i32")
_CONV_ATTRS = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1, "auto_pad": "NOTSET"}


def dtype_range(dtype) -> tuple:
    """(min, max) of an integer dtype (numpy dtype or IR name)."""
    info = np.iinfo(to_numpy_dtype(dtype) if isinstance(dtype, str) else dtype)
    return int(info.min), int(info.max)


# -- quantization parameters ---------------------------------------------------------------------------------
def _check_param(ptype, xtype, axis, block_size, what):
    """A scale or zero point of type ``ptype`` fits ``xtype``: per tensor, per axis or blocked."""
    if ptype is None or ptype.shape is None or xtype.shape is None:
        return
    rank = len(xtype.shape)
    if not block_size and (len(ptype.shape) == 0 or ptype.shape == (1,)):
        return      # per tensor: the axis does not matter
    if not -rank <= axis < rank:
        raise IrcError(f"axis {axis} is out of range for {xtype}")
    shape, n = ptype.shape, xtype.shape[axis % rank]
    if block_size:
        blocks = [-(-d // block_size) if i == axis % rank and isinstance(d, int) else d
                  for i, d in enumerate(xtype.shape)]
        ok = len(shape) == rank and all(p == b or not (isinstance(p, int) and isinstance(b, int))
                                        for p, b in zip(shape, blocks))
    else:
        ok = len(shape) == 1 and (shape[0] == n or None in (shape[0], n))
    if not ok:
        kind = f"blocked by {block_size}" if block_size else "per tensor or per axis"
        raise IrcError(f"{what} {ptype} is not {kind} along axis {axis} of {xtype}")


def expand_param(p, shape, axis: int, block_size: int):
    """A scale or zero point broadcastable to an operand of ``shape``."""
    p = np.asarray(p)
    if block_size:
        axis %= len(shape)
        return np.repeat(p, block_size, axis=axis).take(range(shape[axis]), axis=axis)
    if p.size == 1:
        return p.reshape(())
    axis %= len(shape)
    return p.reshape([-1 if i == axis else 1 for i in range(len(shape))])


def quantize(x, scale, zero_point, dtype, axis: int = 1, block_size: int = 0):
    """saturate(round_half_even(x / scale) + zero_point) as ``dtype``, computed in float32."""
    x = np.asarray(x)
    s = expand_param(scale, x.shape, axis, block_size).astype(np.float32)
    q = np.rint(x.astype(np.float32) / s)
    if zero_point is not None:
        q = q + expand_param(zero_point, x.shape, axis, block_size).astype(np.float64)
    lo, hi = dtype_range(dtype)
    return np.clip(np.nan_to_num(q, nan=0.0), lo, hi).astype(dtype)


def dequantize(x, scale, zero_point, axis: int = 1, block_size: int = 0, dtype=None):
    """(x - zero_point) * scale in the scale's dtype (or ``dtype``), the difference taken in integers."""
    x = np.asarray(x)
    d = x.astype(np.int64)
    if zero_point is not None:
        d = d - expand_param(zero_point, x.shape, axis, block_size).astype(np.int64)
    s = expand_param(scale, x.shape, axis, block_size)
    dtype = np.dtype(dtype or s.dtype)
    work = np.float32 if dtype == np.float16 else dtype
    return (d.astype(work) * s.astype(work)).astype(dtype)


def _output_dtype(ctx, zp_index, attr_value, default):
    zp = ctx.type(zp_index)
    if zp is not None:
        if attr_value and attr_value != zp.dtype:
            raise IrcError(f"output_dtype {attr_value} differs from the zero point's {zp.dtype}")
        return zp.dtype
    return attr_value or default


def _infer_quantize(ctx):
    x = ctx.type(0)
    if x.dtype not in ("f16", "f32", "f64", "i32"):
        raise IrcError(f"quantize_linear needs a float (or int32) input, got {x}")
    dtype = _output_dtype(ctx, 2, ctx["output_dtype"], "u8")
    if dtype not in QUANT_DTYPES[:4]:
        raise IrcError(f"quantize_linear to {dtype} is not supported (int8, uint8, int16, uint16)")
    for i, what in ((1, "scale"), (2, "zero point")):
        _check_param(ctx.type(i), x, ctx["axis"], ctx["block_size"], what)
    return [TensorType(dtype, x.shape)]


@define("quantize_linear", kind="opaque", infer=_infer_quantize,
        attrs={"axis": 1, "block_size": 0, "output_dtype": ""})
def quantize_linear(x, y_scale, y_zero_point=None, *, axis, block_size, output_dtype):
    """Quantize: saturate(round(x / y_scale) + y_zero_point), per tensor, per axis or blocked; the result
    has the zero point's dtype (else ``output_dtype``, else uint8)."""
    dtype = y_zero_point.dtype if y_zero_point is not None else to_numpy_dtype(output_dtype or "u8")
    return quantize(x, y_scale, y_zero_point, dtype, axis, block_size)


def _infer_dequantize(ctx):
    x, s = ctx.type(0), ctx.type(1)
    if x.dtype not in QUANT_DTYPES:
        raise IrcError(f"dequantize_linear of {x} is not supported (int8, uint8, int16, uint16, int32)")
    if ctx.type(2) is not None and ctx.dtype(2) != x.dtype:
        raise IrcError(f"dequantize_linear zero point {ctx.type(2)} differs from the input {x}")
    for i, what in ((1, "scale"), (2, "zero point")):
        _check_param(ctx.type(i), x, ctx["axis"], ctx["block_size"], what)
    return [TensorType(ctx["output_dtype"] or s.dtype, x.shape)]


@define("dequantize_linear", kind="opaque", infer=_infer_dequantize,
        attrs={"axis": 1, "block_size": 0, "output_dtype": ""})
def dequantize_linear(x, x_scale, x_zero_point=None, *, axis, block_size, output_dtype):
    """Dequantize: (x - x_zero_point) * x_scale, per tensor, per axis or blocked."""
    return dequantize(x, x_scale, x_zero_point, axis, block_size, output_dtype and to_numpy_dtype(output_dtype))


def _infer_dynamic(ctx):
    x = ctx.type(0)
    if x.dtype != "f32":
        raise IrcError(f"dynamic_quantize_linear needs a float32 input, got {x}")
    return [TensorType("u8", x.shape), TensorType("f32", ()), TensorType("u8", ())]


def dynamic_params(x):
    """(scale, zero point) that map [min(x, 0), max(x, 0)] onto [0, 255], as onnxruntime computes them."""
    lo = np.float32(min(0.0, float(x.min()))) if x.size else np.float32(0)
    hi = np.float32(max(0.0, float(x.max()))) if x.size else np.float32(0)
    scale = np.float32((hi - lo) / np.float32(255))
    zp = 0.0 if scale == 0 else np.clip(np.rint(np.float32(0) - lo / scale), 0, 255)
    return scale, np.uint8(zp)


@define("dynamic_quantize_linear", onnx="DynamicQuantizeLinear", kind="opaque", infer=_infer_dynamic)
def dynamic_quantize_linear(x):
    """Quantize x to uint8 with the scale and zero point that cover its range (and 0); returns all three.
    An all-zero input has scale 0 and quantizes to 0."""
    scale, zp = dynamic_params(x)
    if scale == 0:
        return np.zeros(x.shape, np.uint8), scale, zp
    return quantize(x, scale, zp, np.uint8), scale, zp


# -- integer products ------------------------------------------------------------------------------------------
def _channel_vector(p, ndim, axis=1):
    """A per-tensor or per-channel parameter shaped to broadcast along ``axis`` of an ``ndim``-D array."""
    p = np.asarray(p)
    return p.reshape(()) if p.size == 1 else p.reshape([-1 if i == axis % ndim else 1 for i in range(ndim)])


def _minus_zero_point(x, zp, axis):
    """x - zp in int64; ``zp`` per tensor, or a vector along ``axis`` of x."""
    d = np.asarray(x).astype(np.int64)
    return d if zp is None else d - _channel_vector(zp, d.ndim, axis).astype(np.int64)


def _check_int8(ctx, indices, what):
    for i in indices:
        t = ctx.type(i)
        if t is not None and t.dtype not in ("i8", "u8"):
            raise IrcError(f"{what} operand {i} must be int8 or uint8, got {t}")


def _matmul_shape(ctx, what, b_index=1):
    """The result shape of numpy's matmul of operands 0 and ``b_index``."""
    a, b = ctx.shape(0), ctx.shape(b_index)
    if a is None or b is None:
        return None
    if not a or not b:
        raise IrcError(f"{what} operands must have rank >= 1, got {ctx.type(0)} and {ctx.type(b_index)}")
    fake = type(ctx)(ctx.op, [TensorType("i32", a), TensorType("i32", b)], {}, [None, None])
    return _infer_matmul(fake)[0].shape


def _infer_matmul_integer(ctx):
    _check_int8(ctx, (0, 1, 2, 3), "matmul_integer")
    return [TensorType("i32", _matmul_shape(ctx, "matmul_integer"))]


def integer_matmul(a, b, a_zp, b_zp):
    """(a - a_zp) @ (b - b_zp) in int64: a_zp per tensor or per row of a, b_zp per tensor or per column."""
    a2 = _minus_zero_point(a, a_zp, -2 if np.ndim(a) > 1 else 0)
    b2 = _minus_zero_point(b, b_zp, -1)
    return np.matmul(a2, b2)


@define("matmul_integer", onnx="MatMulInteger", kind="opaque", infer=_infer_matmul_integer)
def matmul_integer(a, b, a_zero_point=None, b_zero_point=None):
    """Integer matmul: (a - a_zero_point) @ (b - b_zero_point) accumulated in int32."""
    return integer_matmul(a, b, a_zero_point, b_zero_point).astype(np.int32)


def _conv_type(ctx, x_index, w_index, dtype):
    """The result type of a conv2d of operands x_index and w_index, with ``dtype``."""
    fake = type(ctx)(ctx.op, [TensorType("f32", ctx.shape(x_index)), TensorType("f32", ctx.shape(w_index))],
                     ctx.attrs, [None, None])
    return TensorType(dtype, _infer_conv(fake)[0].shape)


def _infer_conv_integer(ctx):
    _check_int8(ctx, (0, 1, 2, 3), "conv_integer")
    return [_conv_type(ctx, 0, 1, "i32")]


def integer_conv(x, w, x_zp, w_zp, attrs):
    """The convolution of (x - x_zp) by (w - w_zp) (w_zp per tensor or per output channel), int64."""
    xd = _minus_zero_point(x, x_zp, 1).astype(np.float64)   # exact: the sums stay far below 2**53
    wd = _minus_zero_point(w, w_zp, 0).astype(np.float64)
    return np.rint(_conv2d(xd, wd, None, **{k: attrs[k] for k in _CONV_ATTRS})).astype(np.int64)


@define("conv_integer", onnx="ConvInteger", kind="opaque", infer=_infer_conv_integer, attrs=dict(_CONV_ATTRS))
def conv_integer(x, w, x_zero_point=None, w_zero_point=None, **attrs):
    """Integer 2-D convolution of (x - x_zero_point) by (w - w_zero_point), accumulated in int32."""
    return integer_conv(x, w, x_zero_point, w_zero_point, attrs).astype(np.int32)


def requantize(acc, scale, zero_point, dtype, qmin=None, qmax=None):
    """clamp(round(float32(acc) * scale) + zero_point) into ``dtype`` (and [qmin, qmax] when given)."""
    q = np.rint(acc.astype(np.float32) * scale.astype(np.float32)) + np.asarray(zero_point).astype(np.float64)
    lo, hi = dtype_range(dtype)
    return np.clip(q, lo if qmin is None else qmin, hi if qmax is None else qmax).astype(dtype)


def _scale_product(x_scale, w_scale, y_scale=None):
    """x_scale * w_scale (/ y_scale) in float32, as onnxruntime forms the requantization multiplier."""
    s = np.asarray(x_scale).astype(np.float32) * np.asarray(w_scale).astype(np.float32)
    return s if y_scale is None else s / np.asarray(y_scale).astype(np.float32)


def _infer_qlinear_conv(ctx):
    _check_int8(ctx, (0, 2, 3, 5, 7), "qlinear_conv")
    if ctx.type(8) is not None and ctx.dtype(8) != "i32":
        raise IrcError(f"qlinear_conv bias must be int32, got {ctx.type(8)}")
    return [_conv_type(ctx, 0, 3, ctx.dtype(7))]


@define("qlinear_conv", onnx="QLinearConv", kind="opaque", infer=_infer_qlinear_conv, attrs=dict(_CONV_ATTRS))
def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None, **attrs):
    """Quantized convolution: the integer convolution (plus the int32 bias B) requantized to y's scale
    and zero point (w_scale and w_zero_point per tensor or per output channel)."""
    acc = integer_conv(x, w, x_zero_point, w_zero_point, attrs)
    if B is not None:
        acc = acc + B.astype(np.int64).reshape(1, -1, 1, 1)
    scale = _channel_vector(_scale_product(x_scale, w_scale, y_scale), acc.ndim)
    return requantize(acc, scale, y_zero_point, y_zero_point.dtype)


def _infer_qlinear_matmul(ctx):
    _check_int8(ctx, (0, 2, 3, 5, 7), "qlinear_matmul")
    return [TensorType(ctx.dtype(7), _matmul_shape(ctx, "qlinear_matmul", 3))]


@define("qlinear_matmul", onnx="QLinearMatMul", kind="opaque", infer=_infer_qlinear_matmul)
def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """Quantized matmul: (a - a_zp) @ (b - b_zp) requantized to y's scale and zero point (a's parameters
    per tensor or per row, b's per tensor or per column)."""
    acc = integer_matmul(a, b, a_zero_point, b_zero_point)
    rows = _channel_vector(a_scale, 2, 0) if acc.ndim > 1 else np.asarray(a_scale).reshape(())
    scale = _scale_product(rows, _channel_vector(b_scale, 1, 0), y_scale)
    return requantize(acc, scale, y_zero_point, y_zero_point.dtype)


# -- fused int8 ops (made by the fuse-qdq pass) -------------------------------------------------------------
FUSED_Q_ATTRS = {"qmin": None, "qmax": None}


def _fused_result_dtype(ctx, what):
    """The fused op's result dtype: y_zero_point's (requantized) or float32 (dequantized)."""
    _check_int8(ctx, (0, 2, 3, 5, 8), what)
    for i in (1, 4, 7):
        if ctx.type(i) is not None and ctx.dtype(i) != "f32":
            raise IrcError(f"{what} scale (operand {i}) must be float32, got {ctx.type(i)}")
    if ctx.type(6) is not None and ctx.dtype(6) != "i32":
        raise IrcError(f"{what} bias must be int32, got {ctx.type(6)}")
    if (ctx.type(7) is None) != (ctx.type(8) is None):
        raise IrcError(f"{what} needs both y_scale and y_zero_point, or neither")
    if ctx.type(8) is None and (ctx["qmin"] is not None or ctx["qmax"] is not None):
        raise IrcError(f"{what} with a float result has no qmin/qmax")
    return "f32" if ctx.type(8) is None else ctx.dtype(8)


def _finish(acc, x_scale, w_scale, y_scale, y_zero_point, qmin, qmax, axis):
    """Requantize (y given) or dequantize the accumulator, scales per output channel along ``axis``."""
    scale = _channel_vector(_scale_product(x_scale, w_scale, y_scale), acc.ndim, axis)
    if y_zero_point is None:
        return acc.astype(np.float32) * scale
    return requantize(acc, scale, y_zero_point, y_zero_point.dtype, qmin, qmax)


def _infer_qconv2d(ctx):
    return [_conv_type(ctx, 0, 3, _fused_result_dtype(ctx, "qconv2d"))]


@define("qconv2d", kind="opaque", infer=_infer_qconv2d, attrs={**_CONV_ATTRS, **FUSED_Q_ATTRS})
def qconv2d(x, x_scale, x_zero_point, w, w_scale, w_zero_point, bias=None, y_scale=None, y_zero_point=None,
            *, qmin, qmax, **attrs):
    """Fused int8 convolution: integer conv + int32 bias, requantized and clamped to [qmin, qmax] (or
    dequantized to float32 without y); what DQ -> conv2d(+bias)(+relu/clip) -> Q becomes."""
    acc = integer_conv(x, w, x_zero_point, w_zero_point, attrs)
    if bias is not None:
        acc = acc + bias.astype(np.int64).reshape(1, -1, 1, 1)
    return _finish(acc, x_scale, w_scale, y_scale, y_zero_point, qmin, qmax, 1)


def _infer_qgemm(ctx):
    a, w = ctx.shape(0), ctx.shape(3)
    dtype = _fused_result_dtype(ctx, "qgemm")
    if w is None or len(w) != 2 or a is None or len(a) < 1:
        raise IrcError(f"qgemm needs a weight [K, N] and an input [..., K], got {ctx.type(3)} and {ctx.type(0)}")
    if isinstance(a[-1], int) and isinstance(w[0], int) and a[-1] != w[0]:
        raise IrcError(f"qgemm of {ctx.type(0)} and {ctx.type(3)}: inner dims {a[-1]} and {w[0]} differ")
    return [TensorType(dtype, tuple(a[:-1]) + (w[1],))]


@define("qgemm", kind="opaque", infer=_infer_qgemm, attrs=dict(FUSED_Q_ATTRS))
def qgemm(a, a_scale, a_zero_point, w, w_scale, w_zero_point, bias=None, y_scale=None, y_zero_point=None,
          *, qmin, qmax):
    """Fused int8 matrix product of a [..., K] by a constant w [K, N] (w's parameters per tensor or per
    column) + int32 bias, requantized and clamped (or dequantized); what DQ -> matmul/gemm(+bias)
    (+relu/clip) -> Q becomes."""
    acc = integer_matmul(a, w, a_zero_point, w_zero_point)
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    return _finish(acc, a_scale, w_scale, y_scale, y_zero_point, qmin, qmax, -1)
