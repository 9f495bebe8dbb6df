"""simplify: remove nodes that do nothing, forwarding their operand to their readers.

- ``identity`` (the importer makes Dropout one) forwards its operand;
- ``cast`` to the dtype the operand already has;
- ``reshape``, ``flatten``, ``squeeze``, ``unsqueeze``, ``expand`` whose result type equals the operand's,
  every dim known (static or a symbol: a symbol names one run-time size, so equal types mean equal shapes);
- ``transpose`` by the identity permutation;
- ``concat`` of a single operand.
Each is sound because the result equals the operand element for element. A graph output is never
forwarded to an input, a constant or another output (see ``util.forward``).
"""
from ..ir import Graph, Node
from ..ops.tensor import transpose_perm
from .manager import register_pass
from .util import forward

_SAME_TYPE_NOOPS = ("reshape", "flatten", "squeeze", "unsqueeze", "expand")


def _known_shape(t) -> bool:
    return t.shape is not None and all(d is not None for d in t.shape)


def _is_noop(node: Node) -> bool:
    x = node.inputs[0] if node.inputs else None
    if x is None or len(node.outputs) != 1:
        return False
    y = node.outputs[0]
    if node.op == "identity":
        return True
    if node.op == "cast":
        return x.type.dtype == y.type.dtype
    if node.op in _SAME_TYPE_NOOPS:
        return x.type == y.type and _known_shape(y.type)
    if node.op == "transpose":
        rank = x.type.rank
        return rank is not None and transpose_perm(node.attrs["perm"], rank) == list(range(rank))
    if node.op == "concat":
        return len(node.inputs) == 1
    return False


@register_pass("simplify", level=1)
def simplify(graph: Graph) -> Graph:
    """Forward the operand of every no-op node to its readers and drop the node."""
    for node in list(graph.nodes):
        if _is_noop(node) and forward(graph, node.outputs[0], node.inputs[0]):
            graph.remove_node(node)
    return graph
