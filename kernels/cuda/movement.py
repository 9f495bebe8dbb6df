"""Data-movement ops on the device: views, gathers through an index map made at lowering, and gather
by indices computed at run time.

reshape and its kin relabel a contiguous array: a view. Most other movement ops (transpose, slice,
expand, tile, gather with constant indices, split, ...) are their numpy reference applied, once at
lowering, to the array of every element's own position (``device.index_map``): the result says which
source element each output element copies, and the device kernel is one gather. concat scatters each
operand into its part of the output the same way. ``gather`` whose indices come from the run (token
ids into an embedding table) is a kernel of its own, which reports an index out of range through a
status word the backend reads after the run (``device.Checked``). Where other ops' operands are only known at run time, the op runs on
the host (``device.host_kernel``).
"""
import math

import numpy as np
from numba import cuda

from ...backend.cuda_registry import lowers
from ...backend.registry import Kernel
from ...ops import get
from ...ops.registry import as_outputs
from ...ops.tensor import norm_axis
from .device import Checked, empty, flat, gather, host_kernel, index_map, launch, scatter, static_shape, upload

# ops whose reference, applied to an index map, yields one index map per result
BY_INDEX_MAP = ("transpose", "slice", "expand", "tile", "gather_elements", "gather_nd",
                "depth_to_space", "space_to_depth", "split", "compress", "reverse_sequence")


@lowers("identity", family="movement")
def lower_identity(node):
    """The operand itself (device arrays are never written in place)."""
    return Kernel(lambda x, *_: x, algo="view")


@lowers("reshape", "flatten", "squeeze", "unsqueeze", family="movement")
def lower_reshape(node):
    """A view with the static result shape."""
    shape = static_shape(node.outputs[0], node)
    return Kernel(lambda x, *_: x.reshape(shape), algo="view")


def _constant_operands(node):
    """The values of operands 1.. when every one is a constant (or omitted), else None."""
    values = []
    for v in node.inputs[1:]:
        if v is not None and v.const_value is None:
            return None
        values.append(None if v is None else v.const_value)
    return values


@lowers(*BY_INDEX_MAP, family="movement")
def lower_by_index_map(node):
    """One gather per result, its index map the op's reference applied to operand 0's positions."""
    rest = _constant_operands(node)
    if rest is None or not node.inputs[0].type.is_static:
        return host_kernel(node)
    positions = index_map(node.inputs[0].type.shape)
    maps = [np.asarray(m) for m in as_outputs(get(node.op).ref(positions, *rest, **node.attrs))]
    indices = [upload(m.astype(np.int64).ravel()) for m in maps]
    shapes = [m.shape for m in maps]

    def run(x, *_):
        outs = tuple(gather(x, i, s) for i, s in zip(indices, shapes))
        return outs if len(outs) > 1 else outs[0]
    return Kernel(run, algo="gather")


@lowers("concat", family="movement")
def lower_concat(node):
    """Each operand scattered into its slab of the result."""
    shape = static_shape(node.outputs[0], node)
    axis = norm_axis(node.attrs["axis"], len(shape), "concat axis")
    sizes = [static_shape(v, node)[axis] for v in node.inputs]
    parts = np.split(index_map(shape), np.cumsum(sizes)[:-1], axis=axis)
    indices = [upload(p.ravel()) for p in parts]
    dtype = node.outputs[0].type.numpy_dtype

    def run(*xs):
        out = empty(shape, dtype)
        for x, i in zip(xs, indices):
            scatter(x, i, out)
        return out
    return Kernel(run, algo="scatter")


@cuda.jit(cache=True)
def _take(x, idx, out, n, inner, status):
    """out [outer, len(idx), inner][o, j, i] = x [outer, n, inner][o, idx[j], i], a negative index
    counted from the end; an index outside [-n, n) sets status[0] and gives 0."""
    t = cuda.grid(1)
    step = cuda.gridsize(1)
    m = idx.shape[0]
    while t < out.shape[0]:
        i = t % inner
        o = t // (inner * m)
        k = idx[(t // inner) % m]
        k = k + n if k < 0 else k
        if k < 0 or k >= n:
            status[0] = 1
            out[t] = 0
        else:
            out[t] = x[(o * n + k) * inner + i]
        t += step


@lowers("gather", family="movement")
def lower_gather(node):
    """Constant indices: an index map (``lower_by_index_map``); indices from the run: ``_take``."""
    if node.inputs[1].const_value is not None or not node.inputs[0].type.is_static:
        return lower_by_index_map(node)
    shape, out_shape = static_shape(node.inputs[0], node), static_shape(node.outputs[0], node)
    a = norm_axis(node.attrs["axis"], len(shape), "gather axis")
    n, inner = shape[a], math.prod(shape[a + 1:])

    def run(x, indices, status):
        out = empty(out_shape, x.dtype)
        if out.size:
            _take[launch(out.size)](flat(x), flat(indices), flat(out), n, inner, status)
        return out
    return Kernel(Checked(run, f"gather indices out of range for an axis of size {n}"), algo="take")
