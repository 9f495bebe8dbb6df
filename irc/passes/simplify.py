"""simplify: remove nodes that do nothing.

- ``identity`` (and Dropout, which the importer makes an identity) forwards its operand;
- ``cast`` to the dtype the operand already has;
- ``reshape`` to the shape the operand already has (both static);
- ``transpose`` by the identity permutation.
Each is sound because the result equals the operand element for element.
"""
from .manager import register_pass
from .util import forward


def _is_noop(node) -> bool:
    if node.op == "identity":
        return True
    x = node.inputs[0] if node.inputs else None
    if x is None:
        return False
    y = node.outputs[0]
    if node.op == "cast":
        return x.type.dtype == y.type.dtype
    if node.op in ("reshape", "squeeze", "unsqueeze", "flatten"):
        return x.type.is_static and x.type == y.type
    if node.op == "transpose":
        perm = node.attrs.get("perm")
        return perm is not None and list(perm) == list(range(len(perm)))
    return False


@register_pass("simplify", level=1)
def simplify(graph):
    """Forward the operand of every no-op node to its readers."""
    for node in list(graph.nodes):
        if _is_noop(node) and forward(graph, node.outputs[0], node.inputs[0]):
            graph.remove_node(node)
    return graph
