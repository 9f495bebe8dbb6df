"""Converters for ONNX nn ops whose form differs from the op table's (opset changes, rewrites).

- Conv, ConvTranspose: ``kernel_shape`` is checked against the weight and dropped (the weight's shape
  says it); a 1-D convolution (rank-3 input) becomes unsqueeze -> the 2-D op on a height-1 image ->
  squeeze; 3-D convolution is unsupported.
- Gemm: C is optional from opset 11 only.
"""
from __future__ import annotations

import numpy as np

from ..errors import IrcError, UnsupportedError
from .onnx import Converter, converter, generic

_CONV_OPS = {"Conv": "conv2d", "ConvTranspose": "conv_transpose2d"}


def _height_one(attrs: dict) -> dict:
    """Attributes of a 1-D convolution, for the same convolution of a height-1 image."""
    lead = {"strides": 1, "dilations": 1, "kernel_shape": 1, "output_padding": 0, "output_shape": 1}
    out = dict(attrs)
    for name, first in lead.items():
        if name in attrs:
            out[name] = [first] + list(attrs[name])
    if "pads" in attrs:
        out["pads"] = [0, attrs["pads"][0], 0, attrs["pads"][1]]
    return out


@converter("Conv", "ConvTranspose")
def conv(cv: Converter, node):
    ins = cv.inputs(node)
    if len(ins) < 2 or ins[0] is None or ins[1] is None:
        raise IrcError(f"{cv.where(node)}: needs an input and a weight")
    x, w = ins[0], ins[1]
    rank = x.type.rank if x.type.rank is not None else w.type.rank
    if rank not in (3, 4):
        raise UnsupportedError(f"{cv.where(node)}: only 1-D and 2-D {node.op_type} is supported "
                               f"(input {x.type}, weight {w.type})")
    attrs = cv.attrs(node) if rank == 4 else _height_one(cv.attrs(node))
    b = cv.builder(node)
    if rank == 3:
        axis = b.const(np.array([2], np.int64))
        x, w = b.op("unsqueeze", x, axis), b.op("unsqueeze", w, axis)
    kernel = attrs.pop("kernel_shape", None)
    if kernel is not None and w.type.shape is not None and list(w.type.shape[2:]) != list(kernel):
        raise IrcError(f"{cv.where(node)}: kernel_shape {kernel} does not match the weight {w.type}")
    y = b.node(_CONV_OPS[node.op_type], [x, w] + ins[2:], attrs).outputs[0]
    return [b.op("squeeze", y, axis)] if rank == 3 else [y]


@converter("Gemm")
def gemm(cv: Converter, node):
    if cv.opset < 11 and len(cv.inputs(node)) < 3:
        raise IrcError(f"{cv.where(node)}: C is required before opset 11")
    return generic(cv, node)
