"""Ops that only move or view data: run as numpy views/copies in the executor, no numba kernel.

For these ops numpy already is the fastest implementation, so the kernel is the op's numpy reference
bound to the node's attributes; the lowering adds the executor's contract: every result is C-contiguous
(so numba kernels downstream see one layout; a result that already is stays a view) and of the dtype the
IR says.
Operands that describe shapes or positions are read at run time, so data-dependent ones work too.
"""
import numpy as np

from ...backend.registry import Kernel, lowers
from ...errors import IrcError
from ...ops import get
from ...ops.registry import as_outputs


def naming_node(node, fn):
    """``fn`` with the IrcErrors it raises at run time (bad operand values) prefixed by the node."""
    where = f"node {node.op} {node.name!r}"

    def run(*args):
        try:
            return fn(*args)
        except IrcError as e:
            raise IrcError(f"{where}: {e}") from None
    return run


def numpy_kernel(node) -> Kernel:
    """The op's reference on the operand arrays, results made contiguous and of the IR dtypes."""
    ref, attrs = get(node.op).ref, dict(node.attrs)
    dtypes = [v.type.numpy_dtype for v in node.outputs]

    def run(*args):
        outs = as_outputs(ref(*args, **attrs))
        res = tuple(np.asarray(o, dtype=d, order="C") for o, d in zip(outs, dtypes))
        return res if len(res) > 1 else res[0]
    return Kernel(naming_node(node, run))


@lowers("identity", family="movement", numba=False)
def lower_identity(node):
    """Operand 0 itself (a view the executor binds once when the operand stays put)."""
    return Kernel(lambda x, *_: x, views=(0,), view=True)


@lowers("shape", family="movement", numba=False)
def lower_shape(node):
    start, end = node.attrs["start"], node.attrs["end"]
    return Kernel(lambda x: np.array(x.shape[start:end], dtype=np.int64), views=())


@lowers("reshape", "flatten", "squeeze", "unsqueeze", family="movement", numba=False)
def lower_reshape(node):
    """Ops that relabel the dims of a contiguous array: a view with the static result shape when it is
    known (bound once by the executor when the operand stays put), else the reference."""
    t = node.outputs[0].type
    if not t.is_static:
        return numpy_kernel(node)
    shape = t.shape
    return Kernel(lambda x, *_: np.asarray(x, order="C").reshape(shape), algo="view", views=(0,), view=True)


# ops whose numpy reference is their kernel
BY_REFERENCE = ("size", "transpose", "concat", "split", "slice", "gather", "gather_elements", "gather_nd",
                "scatter_elements", "scatter_nd", "expand", "tile", "pad", "constant_of_shape", "range", "one_hot",
                "trilu", "depth_to_space", "space_to_depth", "nonzero", "eye_like", "compress", "reverse_sequence")
lowers(*BY_REFERENCE, family="movement", numba=False)(numpy_kernel)
