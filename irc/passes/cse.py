"""cse: merge nodes that compute the same thing.

Two nodes are the same when they have the same op, operands (in any order for commutative ops), attributes
and result types; two constants when their arrays are equal (same dtype, shape and bytes). Sound because
ops are pure: equal inputs give equal results. Walking in order merges whole chains at once (a merged
node's readers then have equal operands). Constants above ``CONST_LIMIT_BYTES`` are not compared (hashing
them costs more than merging saves), nor constants whose value was elided from a text.
"""
import hashlib

import numpy as np

from ..ir import Graph, Node
from .manager import register_pass
from .util import forward

CONST_LIMIT_BYTES = 16 << 20
COMMUTATIVE = frozenset({"add", "mul", "max", "min", "sum", "equal", "and", "or", "xor"})


def _key(v):
    if isinstance(v, np.ndarray):
        return ("array", v.dtype.str, v.shape, hashlib.sha1(np.ascontiguousarray(v).tobytes()).hexdigest())
    if isinstance(v, (list, tuple)):
        return tuple(_key(x) for x in v)
    return (type(v).__name__, v)


def _node_key(node: Node):
    operands = [-1 if v is None else v.uid for v in node.inputs]
    if node.op in COMMUTATIVE:
        operands.sort()
    return (node.op, tuple(operands), tuple(sorted((k, _key(a)) for k, a in node.attrs.items())),
            tuple(str(v.type) for v in node.outputs))


def _comparable(node: Node) -> bool:
    if node.op != "const":
        return True
    value = node.attrs["value"]
    return value is not None and value.nbytes <= CONST_LIMIT_BYTES


@register_pass("cse", level=1)
def cse(graph: Graph) -> Graph:
    """Replace each repeated computation by its first occurrence."""
    seen = {}
    for node in list(graph.nodes):
        if not _comparable(node):
            continue
        first = seen.setdefault(_node_key(node), node)
        if first is not node and all(forward(graph, a, b) for a, b in zip(node.outputs, first.outputs)):
            graph.remove_node(node)
    return graph
