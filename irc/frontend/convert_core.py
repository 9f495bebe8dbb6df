"""Converters for the core ONNX ops (Constant, Dropout): forms that differ from the op table's."""
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
    # no mask result: the importer reports the node unsupported only when a node or output reads the mask
    return [cv.builder(node).op("identity", cv.inputs(node)[0])]

