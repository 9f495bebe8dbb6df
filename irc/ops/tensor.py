"""Ops that move, view or describe data: shapes, reshapes, slices, gathers, concatenation."""
import numpy as np

from ..errors import IrcError
from ..ir.types import TensorType
from .registry import define


def _infer_shape(ctx):
    return [TensorType("i64", (len(ctx.shape(0)),) if ctx.shape(0) is not None else (None,))]


@define("shape", onnx="Shape", kind="shape", attrs={"start": 0, "end": None}, infer=_infer_shape)
def shape(x, *, start, end):
    """The shape of x as an i64 vector, dims [start:end]."""
    return np.array(x.shape[start:end], dtype=np.int64)
