"""Converters for the core ONNX ops (Constant, Dropout): forms that differ from the op table's."""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from .onnx import Converter, converter


@converter("Constant")
def constant(cv: Converter, node):
    attrs = cv.attrs(node)
    if "value" in attrs:
        return [cv.graph.add_const(attrs["value"])]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in attrs:
            return [cv.graph.add_const(np.array(attrs[key], dtype=dtype))]
    raise UnsupportedError(f"{cv.where(node)}: Constant with attributes {list(attrs)} is not supported")


@converter("Dropout")
def dropout(cv: Converter, node):
    """Dropout at inference: the operand unchanged and, when asked for, a mask that keeps everything.

    Dropout in training mode is random: ``training_mode`` (opset 12+) must be omitted or a constant false,
    unless ``ratio`` is a constant 0 (nothing is dropped then either).
    """
    ins = cv.inputs(node)
    if len(ins) > 2 and ins[2] is not None and not _constant_is(ins[2], False) and \
            not (ins[1] is not None and _constant_is(ins[1], 0.0)):
        raise UnsupportedError(f"{cv.where(node)}: training_mode (input 2) must be a constant false: dropout in "
                               "training mode (random) is not supported")
    b = cv.builder(node)
    x = ins[0]
    outs = [b.op("identity", x)]
    if len(node.output) > 1 and node.output[1]:
        outs.append(b.op("constant_of_shape", b.op("shape", x), value=1, dtype="bool"))
    return outs


def _constant_is(v, value) -> bool:
    """Whether ``v`` is a constant holding the one value ``value``."""
    c = v.const_value
    return c is not None and np.size(c) == 1 and np.asarray(c).reshape(-1)[0] == value
