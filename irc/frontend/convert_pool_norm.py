"""Converters for ONNX pool, norm, softmax and resize ops whose form differs from the op table's.

- MaxPool, AveragePool: 1-D and 2-D pools; MaxPool's Indices output is unsupported (``storage_order``
  only orders those indices, so it is dropped).
- BatchNormalization: inference only; ``momentum`` and ``spatial`` are dropped (per-activation
  parameters of ``spatial=0`` keep their shape, which the op reads); training outputs are unsupported.
- GroupNormalization: opset 18's per-group scale and bias become per-channel (the opset-21 form).
- Softmax, LogSoftmax before opset 13: the operand is flattened to 2-D at ``axis`` (default 1) and
  normalized over the second dim; that is one axis where the dims after ``axis`` are all 1, otherwise
  flatten -> the op over the last axis -> reshape back.
- Resize: the roi operand is dropped (``tf_crop_and_resize`` is unsupported, and so is ``antialias``);
  an empty scales tensor counts as absent. Opset 10 uses asymmetric coordinates and truncates nearest
  coordinates when upsampling, rounds them up when downsampling (as onnxruntime does).
- Upsample (opsets 7 and 9, scales as attribute or operand) becomes an opset-10 Resize.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..errors import UnsupportedError
from ..ir import Value
from ..ops.tensor import norm_axis
from .onnx import Converter, converter


def _no_extra_outputs(cv: Converter, node, what: str) -> None:
    if any(node.output[1:]):
        raise UnsupportedError(f"{cv.where(node)}: {what} is not supported")


def _pool(op: str):
    def convert(cv: Converter, node):
        _no_extra_outputs(cv, node, "the Indices output of MaxPool")
        x = cv.inputs(node)[0]
        if x.type.rank not in (None, 3, 4):
            raise UnsupportedError(f"{cv.where(node)}: only 1-D and 2-D pooling is supported (input {x.type})")
        attrs = cv.attrs(node)
        attrs.pop("storage_order", None)
        return cv.emit(node, op, [x], attrs)
    convert.__doc__ = f"{op}: 1-D or 2-D, one output."
    return convert


converter("MaxPool")(_pool("maxpool"))
converter("AveragePool")(_pool("avgpool"))


@converter("BatchNormalization")
def batch_normalization(cv: Converter, node):
    attrs = cv.attrs(node)
    if attrs.pop("training_mode", 0):
        raise UnsupportedError(f"{cv.where(node)}: training_mode=1 is not supported")
    _no_extra_outputs(cv, node, "the training outputs of BatchNormalization")
    attrs.pop("momentum", None)
    attrs.pop("spatial", None)
    return cv.emit(node, "batchnorm", cv.inputs(node), attrs)


@converter("GroupNormalization")
def group_normalization(cv: Converter, node):
    attrs = cv.attrs(node)
    attrs.pop("stash_type", None)
    x, scale, bias = cv.inputs(node)
    if cv.opset < 21:
        c = x.type.shape[1] if x.type.rank else None
        g = attrs.get("num_groups")
        if not isinstance(c, int) or not g or c % g:
            raise UnsupportedError(f"{cv.where(node)}: opset-18 GroupNormalization needs a static channel "
                                   f"count that divides into num_groups (input {x.type})")
        per_group = [cv.const_input(node, i, what) for i, what in ((1, "scale"), (2, "bias"))]
        b = cv.builder(node)
        scale, bias = (b.const(np.repeat(p, c // g)) for p in per_group)
    return cv.emit(node, "group_norm", [x, scale, bias], attrs)


def _softmax(op: str):
    def convert(cv: Converter, node):
        attrs = cv.attrs(node)
        x = cv.inputs(node)[0]
        if cv.opset >= 13:
            return cv.emit(node, op, [x], attrs)
        axis, shape = attrs.pop("axis", 1), x.type.shape
        if shape is not None:
            a = norm_axis(axis, len(shape), f"{node.op_type} axis")
            if all(d == 1 for d in shape[a + 1:]):
                return cv.emit(node, op, [x], {**attrs, "axis": a})
        b = cv.builder(node)
        y = cv.emit(node, op, [b.op("flatten", x, axis=axis)], {**attrs, "axis": -1})[0]
        target = b.const(np.array(shape, np.int64)) if x.type.is_static else b.op("shape", x)
        return [b.op("reshape", y, target, allowzero=1)]
    convert.__doc__ = f"{op}: opset-13 form (one axis, default -1); older forms flatten at axis."
    return convert


converter("Softmax")(_softmax("softmax"))
converter("LogSoftmax")(_softmax("log_softmax"))


def _opset10_nearest_mode(cv: Converter, node, scales: Optional[np.ndarray]) -> str:
    """Nearest rounding of Resize-10 and Upsample: truncate when upsampling, round up when downsampling."""
    if scales is None or np.all(scales >= 1):
        return "floor"
    if np.all(scales <= 1):
        return "ceil"
    raise UnsupportedError(f"{cv.where(node)}: nearest resize that both up- and downsamples (scales "
                           f"{scales.tolist()}) is not supported before opset 11")


def _resize_opset10(cv: Converter, node, x: Value, scales: Value, mode: str) -> List[Value]:
    """Resize-10 / Upsample semantics: asymmetric coordinates, nearest or linear."""
    mode = "linear" if mode in ("linear", "bilinear") else mode
    attrs = {"mode": mode, "coordinate_transformation_mode": "asymmetric"}
    if mode == "nearest":
        value = scales.const_value
        attrs["nearest_mode"] = _opset10_nearest_mode(cv, node, None if value is None else value.reshape(-1))
    return cv.emit(node, "resize", [x, scales], attrs)


@converter("Resize")
def resize(cv: Converter, node):
    attrs = cv.attrs(node)
    ins = cv.inputs(node) + [None] * 4
    if cv.opset < 11:
        return _resize_opset10(cv, node, ins[0], ins[1], attrs.get("mode", "nearest"))
    if attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        raise UnsupportedError(f"{cv.where(node)}: coordinate_transformation_mode tf_crop_and_resize "
                               "is not supported")
    if attrs.pop("antialias", 0):
        raise UnsupportedError(f"{cv.where(node)}: antialias=1 is not supported")
    attrs.pop("extrapolation_value", None)
    x, scales, sizes = ins[0], ins[2], ins[3]
    if scales is not None and scales.type.shape == (0,):
        scales = None
    return cv.emit(node, "resize", [x, scales, sizes], attrs)


@converter("Upsample")
def upsample(cv: Converter, node):
    attrs = cv.attrs(node)
    ins = cv.inputs(node)
    if "scales" in attrs:
        scales = cv.builder(node).const(np.array(attrs["scales"], np.float32))
    elif len(ins) > 1:
        scales = ins[1]
    else:
        raise UnsupportedError(f"{cv.where(node)}: Upsample without scales")
    return _resize_opset10(cv, node, ins[0], scales, attrs.get("mode", "nearest"))
