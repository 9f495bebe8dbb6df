"""infer-shapes: recompute every result type from the operand types, in order.

Needed after input types change (a symbolic batch bound to a size at run time) so that later passes and
the backend see the concrete shapes. Constants keep their own type.
"""
from ..errors import IrcError
from ..ops import infer_types
from .manager import register_pass


@register_pass("infer-shapes", level=0)
def infer_shapes(graph):
    """Recompute result types node by node."""
    for n in graph.nodes:
        if n.op == "const":
            continue
        try:
            types = infer_types(n)
        except IrcError as e:
            raise IrcError(f"node {n.op} {n.name!r}: {e}") from None
        for v, t in zip(n.outputs, types):
            v.type = t
    return graph
