"""Ops that only move or view data: run as numpy views/copies in the executor, no numba kernel."""
import numpy as np

from ...backend.registry import Kernel, lowers


@lowers("identity", family="movement", numba=False)
def lower_identity(node):
    return Kernel(lambda x, *_: x)


@lowers("shape", family="movement", numba=False)
def lower_shape(node):
    start, end = node.attrs["start"], node.attrs["end"]
    return Kernel(lambda x: np.array(x.shape[start:end], dtype=np.int64))
