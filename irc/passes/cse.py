"""cse: merge nodes that compute the same thing (same op, operands and attributes; equal constants).

Sound because ops are pure. Constants above 16 MiB are not compared (hashing them costs more than merging
saves).
"""
import hashlib

import numpy as np

from .manager import register_pass
from .util import forward

_CONST_LIMIT = 16 << 20


def _key(v):
    if isinstance(v, np.ndarray):
        return ("array", v.dtype.str, v.shape, hashlib.sha1(np.ascontiguousarray(v).tobytes()).hexdigest())
    if isinstance(v, (list, tuple)):
        return tuple(_key(x) for x in v)
    return (type(v).__name__, v)


@register_pass("cse", level=1)
def cse(graph):
    """Replace each repeated computation by its first occurrence."""
    seen = {}
    for node in list(graph.nodes):
        if node.op == "const" and node.attrs["value"] is not None and node.attrs["value"].nbytes > _CONST_LIMIT:
            continue
        key = (node.op, tuple(None if v is None else v.uid for v in node.inputs),
               tuple(sorted((k, _key(a)) for k, a in node.attrs.items())),
               tuple(str(v.type) for v in node.outputs))
        first = seen.get(key)
        if first is None:
            seen[key] = node
            continue
        if all(forward(graph, a, b) for a, b in zip(node.outputs, first.outputs)):
            graph.remove_node(node)
    return graph
