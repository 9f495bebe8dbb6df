"""Converters for ONNX elementwise ops whose form differs from the op table's (opset changes, rewrites).

- Cast names its target as a TensorProto element type; the IR names dtypes (``f32``...). The float8
  attribute ``saturate`` (opset 19+) does not apply to the dtypes irc supports; ``round_mode`` (opset 24+)
  is read only at its default (irc/frontend/onnx_versions.py).
- CastLike is a cast to the dtype of its second operand.
- Clip before opset 11 carried ``min``/``max`` as attributes; they become constant operands.
- Mod of floating-point operands with ``fmod=0`` (allowed from version 28): the floored remainder, made
  from the truncated one.
- BitShift: shifts out of the dtype's range give what version 28 defines.
- Equal of strings is refused (there is no kernel for strings).
The other elementwise ops (Gelu, HardSwish, PRelu, Pow with an exponent of another dtype, Mod of
integers or with ``fmod=1``, the variadic Sum/Max/Min/Mean ...) convert generically; their ops check
attributes and operand types. Sum/Max/Min/Mean before opset 8 did not broadcast; broadcasting them is a superset.
"""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from .onnx import ONNX_DTYPES, Converter, converter, generic

FLOATS = ("f16", "f32", "f64")


def _cast(cv: Converter, node, to: str):
    if to == "str":
        raise UnsupportedError(f"{cv.where(node)}: casts to strings are not supported")
    return [cv.builder(node).op("cast", cv.inputs(node)[0], to=to)]


@converter("Cast")
def cast(cv: Converter, node):
    to = cv.attrs(node).get("to")
    if to not in ONNX_DTYPES:
        raise UnsupportedError(f"{cv.where(node)}: cast to element type {to!r} is not supported")
    return _cast(cv, node, ONNX_DTYPES[to])


@converter("CastLike")
def cast_like(cv: Converter, node):
    ins = cv.inputs(node)
    if len(ins) != 2 or ins[1] is None:
        raise UnsupportedError(f"{cv.where(node)}: CastLike needs two operands")
    return _cast(cv, node, ins[1].type.dtype)


@converter("Clip")
def clip(cv: Converter, node):
    if cv.opset >= 11:
        return generic(cv, node)
    attrs = cv.attrs(node)
    unknown = set(attrs) - {"min", "max"}
    if unknown:
        raise UnsupportedError(f"{cv.where(node)}: attributes {sorted(unknown)} are not supported")
    x = cv.inputs(node)[0]
    bounds = [None if k not in attrs else cv.graph.add_const(np.array(attrs[k], dtype=x.type.numpy_dtype))
              for k in ("min", "max")]
    while bounds and bounds[-1] is None:
        bounds.pop()
    return [cv.builder(node).op("clip", x, *bounds)]


@converter("Equal")
def equal(cv: Converter, node):
    """Equal of numbers and bools; strings have no kernel and are refused here, before compilation."""
    if any(v is not None and v.type.dtype == "str" for v in cv.inputs(node)):
        raise UnsupportedError(f"{cv.where(node)}: Equal of strings is not supported")
    return generic(cv, node)


@converter("Mod")
def mod(cv: Converter, node):
    """Mod: for floating-point operands with ``fmod=0`` (defined by version 28; earlier versions require
    ``fmod=1``), the floored remainder x - floor(x / y) * y (sign of y) is the truncated one (``fmod=1``,
    sign of x) plus y where it is nonzero and its sign differs from y's. That also gives the spec's special
    cases: y where y is infinite and x finite of the other sign, NaN where x is infinite or y zero."""
    x, y = cv.inputs(node)[:2]
    if cv.opset < 28 or cv.attrs(node).get("fmod", 0) == 1 or x.type.dtype not in FLOATS:
        return generic(cv, node)
    b = cv.builder(node)
    zero = _scalar(cv, 0, x)
    r = b.op("mod", x, y, fmod=1)
    signs_differ = b.op("xor", b.op("less", r, zero), b.op("less", y, zero))
    fix = b.op("and", b.op("not", b.op("equal", r, zero)), signs_differ)
    return [b.op("where", fix, b.op("add", r, y), r)]


@converter("BitShift")
def bit_shift(cv: Converter, node):
    """BitShift, with shifts by a negative amount or by the bit width or more giving what sign extension
    alone gives (defined by version 28, undefined before): -1 for a right shift of a negative operand,
    else 0."""
    x, y = cv.inputs(node)[:2]
    b = cv.builder(node)
    shifted = generic(cv, node)[0]
    bits = 8 * x.type.numpy_dtype.itemsize
    out_of_range = b.op("or", b.op("less", y, _scalar(cv, 0, y)), b.op("greater_equal", y, _scalar(cv, bits, y)))
    fill = _scalar(cv, 0, x)
    if cv.attrs(node).get("direction") == "RIGHT" and x.type.numpy_dtype.kind == "i":
        fill = b.op("where", b.op("less", x, fill), _scalar(cv, -1, x), fill)
    return [b.op("where", out_of_range, fill, shifted)]


def _scalar(cv: Converter, value, like):
    """A constant scalar of ``like``'s dtype."""
    return cv.graph.add_const(np.array(value, dtype=like.type.numpy_dtype))
