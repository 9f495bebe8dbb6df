"""Converters for the core ONNX ops (Constant, Dropout, Conv): forms that differ from the op table's."""
from __future__ import annotations

from ..errors import UnsupportedError
from .onnx import Converter, converter, generic


@converter("Constant")
def constant(cv: Converter, node):
    attrs = cv.attrs(node)
    if "value" in attrs:
        return [cv.graph.add_const(attrs["value"])]
    import numpy as np
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in attrs:
            return [cv.graph.add_const(np.array(attrs[key], dtype=dtype))]
    raise UnsupportedError(f"{cv.where(node)}: Constant with attributes {list(attrs)} is not supported")


@converter("Dropout")
def dropout(cv: Converter, node):
    if len(node.output) > 1 and node.output[1]:
        raise UnsupportedError(f"{cv.where(node)}: the mask output of Dropout is not supported")
    return [cv.builder(node).op("identity", cv.inputs(node)[0])]


@converter("Conv")
def conv(cv: Converter, node):
    attrs = cv.attrs(node)
    attrs.pop("kernel_shape", None)
    x = cv.inputs(node)[0]
    if x.type.rank != 4:
        raise UnsupportedError(f"{cv.where(node)}: only 2-D convolution is supported (input {x.type})")
    return cv.builder(node).node("conv2d", cv.inputs(node), attrs).outputs
