"""Converters for ONNX elementwise ops whose form differs from the op table's (opset changes, rewrites).

- Cast names its target as a TensorProto element type; the IR names dtypes (``f32``...). The float8
  attributes ``saturate``/``round_mode`` (opset 19+) do not apply to the dtypes irc supports.
- CastLike is a cast to the dtype of its second operand.
- Clip before opset 11 carried ``min``/``max`` as attributes; they become constant operands.
The other elementwise ops (Gelu, HardSwish, PRelu, Pow with an exponent of another dtype, Mod with
``fmod``, BitShift, the variadic Sum/Max/Min/Mean ...) convert generically; their ops check attributes
and operand types. Sum/Max/Min/Mean before opset 8 did not broadcast; broadcasting them is a superset.
"""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from .onnx import ONNX_DTYPES, Converter, converter, generic


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
