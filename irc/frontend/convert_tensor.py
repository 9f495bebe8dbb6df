"""Converters for ONNX tensor ops whose form differs from the op table's (opset changes, rewrites).

The op table holds the newest form, where positions and sizes are operands. Older opsets give them as
attributes (Squeeze/Unsqueeze axes before 13, Slice starts/ends/axes before 10, Split's split before 13,
Pad's pads and value before 11, TopK's k before 10, a reduction's axes before 18, ReduceSum's before 13);
the converters here turn those attributes into constant operands.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from ..errors import UnsupportedError
from ..ir import Value
from ..ir.types import from_numpy_dtype
from ..ops.reduce import REDUCTIONS
from .onnx import Converter, converter, onnx_dtype

I64 = np.int64


def _attrs_to_operands(cv: Converter, node, op: str, names: Sequence[str]) -> List[Value]:
    """The ONNX operands, then each attribute of ``names`` the node sets as a constant operand (the old
    opsets' form); attributes left over are copied."""
    attrs = cv.attrs(node)
    present = [n for n in names if n in attrs]
    if not present:
        return cv.emit(node, op, cv.inputs(node), attrs)
    b = cv.builder(node)
    extra = [b.const(np.asarray(attrs.pop(n), dtype=I64)) if n in present else None for n in names]
    return cv.emit(node, op, cv.inputs(node) + extra, attrs)


@converter("Squeeze")
def squeeze(cv: Converter, node):
    return _attrs_to_operands(cv, node, "squeeze", ["axes"])


@converter("Unsqueeze")
def unsqueeze(cv: Converter, node):
    return _attrs_to_operands(cv, node, "unsqueeze", ["axes"])


@converter("Slice")
def slice_(cv: Converter, node):
    return _attrs_to_operands(cv, node, "slice", ["starts", "ends", "axes"])


@converter("TopK")
def topk(cv: Converter, node):
    return _attrs_to_operands(cv, node, "topk", ["k"])


@converter("Split")
def split(cv: Converter, node):
    """Split: ``num_outputs`` is always set, from the node's outputs (opset 18 names it, older ones imply it)."""
    n = len(node.output)
    attrs = cv.attrs(node)
    if attrs.pop("num_outputs", n) != n:
        raise UnsupportedError(f"{cv.where(node)}: num_outputs differs from the number of outputs {n}")
    ins = cv.inputs(node)
    if "split" in attrs:
        ins = ins + [cv.builder(node).const(np.asarray(attrs.pop("split"), dtype=I64))]
    attrs["num_outputs"] = n
    return cv.emit(node, "split", ins, attrs)


@converter("Pad")
def pad(cv: Converter, node):
    """Pad before opset 11: pads and value are attributes; the value takes the operand's dtype."""
    attrs = cv.attrs(node)
    if "pads" not in attrs:
        return cv.emit(node, "pad", cv.inputs(node), attrs)
    x = cv.inputs(node)[0]
    b = cv.builder(node)
    pads = b.const(np.asarray(attrs.pop("pads"), dtype=I64))
    value = b.const(np.asarray(attrs.pop("value", 0.0), dtype=x.type.numpy_dtype))
    return cv.emit(node, "pad", [x, pads, value], attrs)


@converter("ConstantOfShape")
def constant_of_shape(cv: Converter, node):
    """ConstantOfShape: the one-element ``value`` tensor becomes a scalar ``value`` and a ``dtype`` name."""
    attrs = cv.attrs(node)
    t = attrs.pop("value", np.zeros(1, np.float32))
    if t.size != 1:
        raise UnsupportedError(f"{cv.where(node)}: value must hold one element, got shape {list(t.shape)}")
    v = t.reshape(-1)[0]
    value = float(v) if t.dtype.kind == "f" else int(v)
    return cv.emit(node, "constant_of_shape", cv.inputs(node),
                 {**attrs, "value": value, "dtype": from_numpy_dtype(t.dtype)})


@converter("EyeLike")
def eye_like(cv: Converter, node):
    """EyeLike: the ONNX element type ``dtype`` (default: the operand's) becomes an IR dtype name."""
    attrs = cv.attrs(node)
    x = cv.inputs(node)[0]
    attrs["dtype"] = onnx_dtype(attrs["dtype"], cv.where(node)) if "dtype" in attrs else x.type.dtype
    return cv.emit(node, "eye_like", [x], attrs)


def _reduction(op: str):
    def convert(cv: Converter, node):
        return _attrs_to_operands(cv, node, op, ["axes"])
    convert.__doc__ = f"{op}: axes given as an attribute (opset < 18, ReduceSum < 13) become an operand."
    return convert


for _op, (_onnx_name, _, _) in REDUCTIONS.items():
    converter(_onnx_name)(_reduction(_op))


def _dim(b, x: Value, axis: int) -> Value:
    """The size of ``x`` along ``axis`` as an i64 scalar (a constant once the shape is known)."""
    return b.op("gather", b.op("shape", x), b.const(np.asarray(axis, dtype=I64)), axis=0)


@converter("Hardmax")
def hardmax(cv: Converter, node):
    """Hardmax: 1 at the first maximum along ``axis``, 0 elsewhere, as one_hot(argmax(x)) on that axis.

    Before opset 13 the operand is seen as 2-D ([prod(dims[:axis]), prod(dims[axis:])], axis default 1):
    it is flattened, and the result reshaped back.
    """
    attrs = cv.attrs(node)
    x = cv.inputs(node)[0]
    b = cv.builder(node)
    old = cv.opset < 13
    axis = attrs.pop("axis", 1 if old else -1)
    if attrs:
        raise UnsupportedError(f"{cv.where(node)}: attributes {sorted(attrs)} are not supported")
    if x.type.shape is None:
        raise UnsupportedError(f"{cv.where(node)}: the operand's rank must be known")
    rank = len(x.type.shape)
    if not -rank <= axis < max(rank, 1):
        raise UnsupportedError(f"{cv.where(node)}: axis {axis} is out of range for rank {rank}")
    axis %= max(rank, 1)
    src = b.op("flatten", x, axis=axis) if old else x
    at = 1 if old else axis
    hot = b.op("one_hot", b.op("argmax", src, axis=at, keepdims=0, select_last_index=0), _dim(b, src, at),
               b.const(np.asarray([0, 1], dtype=x.type.numpy_dtype)), axis=at)
    out = b.op("reshape", hot, b.op("shape", x), allowzero=0) if old else hot
    return [out]


@converter("CenterCropPad")
def center_crop_pad(cv: Converter, node):
    """CenterCropPad: per axis, crop or pad ``x`` to the target size around its centre, as one pad with
    signed pads (negative pads crop): begin = trunc((target - size) / 2), end = the rest."""
    attrs = cv.attrs(node)
    x, target = cv.inputs(node)
    b = cv.builder(node)
    if x.type.shape is None:
        raise UnsupportedError(f"{cv.where(node)}: the operand's rank must be known")
    rank = len(x.type.shape)
    axes = [a % rank for a in attrs.pop("axes", range(rank))]
    if attrs:
        raise UnsupportedError(f"{cv.where(node)}: attributes {sorted(attrs)} are not supported")
    sizes = b.op("gather", b.op("shape", x), b.const(np.asarray(axes, dtype=I64)), axis=0)
    diff = b.op("sub", b.op("cast", target, to="i64"), sizes)
    half = b.op("div", b.op("abs", diff), b.const(np.asarray(2, dtype=I64)))
    begin = b.op("mul", b.op("sign", diff), half)
    pads = b.op("concat", begin, b.op("sub", diff, begin), axis=0)
    return [b.op("pad", x, pads, None, b.const(np.asarray(axes, dtype=I64)), mode="constant")]
