"""fold-constants: evaluate nodes whose operands are all constants, and shapes that are static.

- a node whose operands are all ``const`` is replaced by a ``const`` holding its reference result
  (sound: every op is pure and the reference is the op's definition);
- ``shape(x)`` of an ``x`` whose dims in the asked range are static becomes a constant, which lets the
  Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains of exporters fold away once shapes are known;
- results larger than ``FOLD_LIMIT_BYTES`` are left to run time, so folding cannot exhaust memory.
"""
import numpy as np

from ..errors import IrcError
from ..ops import OPS, run_reference
from .manager import register_pass

FOLD_LIMIT_BYTES = 1 << 30


def _static_shape_value(node):
    t = node.inputs[0].type
    if t.shape is None:
        return None
    dims = t.shape[node.attrs["start"]:node.attrs["end"]]
    if all(isinstance(d, int) for d in dims):
        return np.array(dims, dtype=np.int64)
    return None


@register_pass("fold-constants", level=1)
def fold_constants(graph):
    """Replace constant-computable nodes by constants."""
    for node in list(graph.nodes):
        if node.op == "const":
            continue
        if node.op == "shape":
            val = _static_shape_value(node)
            results = None if val is None else [val]
        elif all(v is None or v.is_const for v in node.inputs) and node.inputs and \
                all(v is None or v.const_value is not None for v in node.inputs):
            if any(isinstance(t.numel(), int) and t.numel() * t.numpy_dtype.itemsize > FOLD_LIMIT_BYTES
                   for t in (v.type for v in node.outputs) if t.is_static):
                continue
            try:
                results = run_reference(OPS[node.op], [None if v is None else v.const_value for v in node.inputs],
                                        node.attrs)
            except IrcError as e:
                raise IrcError(f"node {node.op} {node.name!r}: {e}") from None
        else:
            continue
        if results is None:
            continue
        for v, r in zip(node.outputs, results):
            r = np.ascontiguousarray(r, dtype=v.type.numpy_dtype)
            c = graph.add_const(r, name=v.name, before=node)
            c.name = v.name
            graph.replace_all_uses(v, c)
        graph.remove_node(node)
    return graph
